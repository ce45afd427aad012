"""Session memory: a cache of each chat's recent turns, behind the SessionStore contract."""
