"""Keep secrets out of the logs, whatever a library decides to log.

The first defence is not logging them: libraries whose lower levels carry secrets or patient
text (`QUIET_LOGGERS`) are held above those levels, whatever the level a deployment sets.
The second is a filter on every root handler that rewrites each record, message and
traceback, replacing the configured secrets and anything shaped like a Bot API token with
"[redacted]". A library that starts
logging URLs at a new level, or an exception whose text quotes a URL, is caught here.
"""

from __future__ import annotations

import logging
import re

from pydantic import SecretStr

from bot.config import Settings

REDACTED = "[redacted]"
# A Bot API token: the bot's numeric id, a colon, 35 URL-safe characters.
BOT_TOKEN = re.compile(r"\b\d{5,16}:[A-Za-z0-9_-]{30,}")
# Libraries whose lower levels carry secrets or patient text, and the least level kept:
# httpx and httpcore log each request URL (a Bot API URL holds the token) at INFO and DEBUG;
# python-telegram-bot logs whole Bot API results, patients' messages included, at DEBUG.
# openai 3.x ships its own copies of both as httpx2 and httpcore2, with the same habits.
QUIET_LOGGERS = {
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "httpx2": logging.WARNING,
    "httpcore2": logging.WARNING,
    "telegram": logging.INFO,
}


class RedactSecrets(logging.Filter):
    """Replace secrets in a record's message and traceback (the record is rewritten once)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        unique = {s for s in secrets if s}
        self.secrets = sorted((s for s in unique if len(s) >= 6), key=len, reverse=True)
        # A short secret (a weak database password) is still a secret: it is redacted where
        # it stands as a word of its own, so it does not eat ordinary words that contain it.
        short = sorted((s for s in unique if len(s) < 6), key=len, reverse=True)
        self._short = (
            re.compile("|".join(rf"(?<![\w]){re.escape(s)}(?![\w])" for s in short))
            if short
            else None
        )
        self._formatter = logging.Formatter()

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        if self._short is not None:
            text = self._short.sub(REDACTED, text)
        return BOT_TOKEN.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_carebot_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what can be kept
            message = str(record.msg)
        record.msg, record.args = self.redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        record._carebot_redacted = True
        return True


def secrets_of(settings: Settings) -> list[str]:
    """The configured secret values (each message key, and the password inside each
    database/Redis URL)."""
    values = []
    # Every secret setting, whatever its name: a new one is redacted without a change here.
    for name in type(settings).model_fields:
        secret = getattr(settings, name)
        if not isinstance(secret, SecretStr):
            continue
        value = secret.get_secret_value()
        values.append(value)
        if secret is settings.message_keys:  # each key on its own, as it may be quoted alone
            values.extend(key.strip() for key in value.split(","))
        password = re.search(r"://[^:/@]*:([^@]+)@", value)
        if password:
            values.append(password.group(1))
    return values


def protect_logs(settings: Settings) -> RedactSecrets:
    """Hold talkative libraries above their revealing levels; redact on every root handler."""
    for name, least in QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        logger.setLevel(max(least, logger.level))
    redact = RedactSecrets(secrets_of(settings))
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactSecrets)]:
            handler.removeFilter(old)
        handler.addFilter(redact)
    return redact
