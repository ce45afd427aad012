"""A log scan over the whole test run: no bot token, password or patient's words in any log
record CareBot's code emits, at any level the run lets through.

The test suite sends recognisable patient text, test passwords and fake bot tokens through
every path; if one of them reaches a log line, a deployment's logs would hold the real thing.
Installed on the root logger for the session by tests/conftest.py, with the root at INFO and
the talkative libraries held where `carebot` holds them (bot.log_safety.QUIET_LOGGERS), as
in a deployment; the session fails with the findings listed. Records of the tests' own fakes
(loggers under `tests.`) are not CareBot's logs and are skipped.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

# Fake tokens the tests configure, and the shape of a real Bot API token.
TOKENS = ("123:TEST", "123:abc", "987654321:AAH-secret", "123456:FAULTS-campaign-token")
REAL_TOKEN = re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}\b")
PASSWORDS = ("correct horse battery staple", "a long enough password", "db-password-value-x9")
# Words only patients say in the tests (never a rule id, guideline title or log template).
PATIENT_WORDS = (
    "crushing chest pain",
    "mild fever since yesterday",
    "face is drooping",
    "Zebedee",
    "Hortensia",
    "Quartermaine",
)


@dataclass(frozen=True)
class Finding:
    """A log record holding something it must not."""

    what: str
    logger: str
    level: str
    excerpt: str


class LogScan(logging.Handler):
    """Collect the records that leak a secret or a patient's words."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.findings: list[Finding] = []
        self.scanned = 0

    def addFilter(self, filter: Any) -> None:
        """Refused: bot.log_safety puts its redacting filter on every root handler, which
        would hide from the scan the very leaks it looks for."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("tests."):
            return
        self.scanned += 1
        try:
            text = record.getMessage()
        except Exception:  # a broken format string is not a leak
            return
        if record.exc_info and record.exc_info[1] is not None:
            text += f"\n{record.exc_info[1]!r}"
        what = self.leaked(text)
        if what is not None:
            excerpt = text[:160].replace("\n", " ")
            self.findings.append(Finding(what, record.name, record.levelname, excerpt))

    @staticmethod
    def leaked(text: str) -> str | None:
        """What `text` leaks, if anything."""
        lowered = text.lower()
        for token in TOKENS:
            if token in text:
                return "a bot token"
        if REAL_TOKEN.search(text):
            return "a bot token"
        for password in PASSWORDS:
            if password in text:
                return "a password"
        for words in PATIENT_WORDS:
            if words.lower() in lowered:
                return "a patient's words"
        return None
