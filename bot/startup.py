"""What every CareBot process does first with its settings: logging that never shows a
secret or patient text, and the keys that seal data at rest."""

from __future__ import annotations

import logging

from bot.config import Settings
from bot.log_safety import protect_logs
from bot.storage import encryption


def prepare_process(settings: Settings) -> None:
    """Set up logging (with redaction) and encryption at rest for this process."""
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Alembic announces each of its plugins at INFO on import: noise in every command's output.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # No bot token, password or key in any log line (bot.log_safety).
    protect_logs(settings)
    encryption.configure(settings.message_keys)
