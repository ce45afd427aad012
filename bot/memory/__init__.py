"""Session memory: recent history and per-chat state, behind the SessionStore contract."""
