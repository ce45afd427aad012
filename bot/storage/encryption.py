"""Optional encryption at rest of patients' words: message text and metadata, case summaries
and outcome notes, the chat's state, raw channel updates and audit details, with keys from
the environment (CAREBOT_MESSAGE_KEYS) and `cryptography`'s MultiFernet (AES-128-CBC with
HMAC-SHA256, a timestamp, rotation).

The first key encrypts; every key listed decrypts, so a new key is put first and the old
one kept until `carebot keys rotate` has re-encrypted every row with the new one. Stored
values carry a prefix (text) or are wrapped as {"sealed": ...} (JSON), so rows written before
encryption was turned on are still read (and `carebot keys rotate` encrypts them). Empty
values stay empty: they say nothing, and queries that skip empty messages keep working.

What it protects against: a copied database file or backup without the environment. What it
does not: whoever runs as CareBot's user or root on the host reads the key too.

The cipher is process-wide (columns are decoded wherever the database is read); `configure`
is called once at start by `carebot` and by the runtime.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr
from sqlalchemy.engine import Dialect
from sqlalchemy.types import JSON, TypeDecorator
from sqlmodel.sql.sqltypes import AutoString

logger = logging.getLogger(__name__)
PREFIX = "fernet:"


class UndecryptableText(Exception):
    """An encrypted value that no configured key opens (the key is missing or wrong)."""


def parse_keys(raw: str) -> list[bytes]:
    """The keys of CAREBOT_MESSAGE_KEYS (comma-separated Fernet keys); raises ValueError
    naming the position of a bad one, never its value."""
    keys = [k.strip().encode() for k in raw.split(",") if k.strip()]
    if not keys:
        raise ValueError("list at least one key (carebot keys new makes one)")
    for i, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except ValueError as exc:
            raise ValueError(f"key {i} is not a Fernet key (carebot keys new makes one)") from exc
    return keys


class TextCipher:
    """Encrypt with the first key, decrypt with any."""

    def __init__(self, keys: list[bytes]) -> None:
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def seal(self, text: str) -> str:
        return PREFIX + self._fernet.encrypt(text.encode()).decode()

    def open(self, stored: str) -> str:
        try:
            return self._fernet.decrypt(stored[len(PREFIX) :].encode()).decode()
        except InvalidToken as exc:
            raise UndecryptableText("no configured key opens this text") from exc

    def seal_json(self, value: Any) -> dict[str, str]:
        return {SEALED_KEY: self.seal(json.dumps(value, ensure_ascii=False))}

    def open_json(self, stored: dict[str, Any]) -> Any:
        return json.loads(self.open(str(stored[SEALED_KEY])))

    def rotate_json(self, stored: Any) -> dict[str, str]:
        """A JSON value encrypted with the first key (a plain one gets encrypted)."""
        if is_sealed(stored):
            return {SEALED_KEY: self.rotate(str(stored[SEALED_KEY]))}
        return self.seal_json(stored)

    def rotate(self, stored: str) -> str:
        """The value encrypted with the first key (plaintext gets encrypted)."""
        if not stored.startswith(PREFIX):
            return self.seal(stored)
        try:
            token = self._fernet.rotate(stored[len(PREFIX) :].encode())
        except InvalidToken as exc:
            raise UndecryptableText("no configured key opens this text") from exc
        return PREFIX + token.decode()


SEALED_KEY = "sealed"


def is_sealed(value: Any) -> bool:
    """Whether a stored JSON value is an encrypted one."""
    return isinstance(value, dict) and len(value) == 1 and SEALED_KEY in value


_cipher: TextCipher | None = None


def configure(keys: SecretStr | None) -> None:
    """Use these keys from now on; None stores plaintext (and an encrypted value read then
    raises UndecryptableText rather than reaching anyone as gibberish)."""
    global _cipher
    _cipher = TextCipher(parse_keys(keys.get_secret_value())) if keys is not None else None
    if _cipher is not None:
        logger.info("patient text is encrypted at rest")


def cipher() -> TextCipher | None:
    """The cipher in use, if encryption is on."""
    return _cipher


class SealedText(TypeDecorator[str]):
    """A text column encrypted at rest when a key is configured."""

    impl = AutoString  # the columns' type before encryption: no migration needed
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if not value or _cipher is None:
            return value
        return _cipher.seal(str(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if not isinstance(value, str) or not value.startswith(PREFIX):
            return value
        if _cipher is None:
            raise UndecryptableText("this text is encrypted: set CAREBOT_MESSAGE_KEYS")
        return _cipher.open(value)


class SealedJSON(TypeDecorator[Any]):
    """A JSON column encrypted at rest when a key is configured: stored as {"sealed": token}."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if not value or _cipher is None:
            return value
        return _cipher.seal_json(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if not is_sealed(value):
            return value
        if _cipher is None:
            raise UndecryptableText("this record is encrypted: set CAREBOT_MESSAGE_KEYS")
        return _cipher.open_json(value)


def seal_if_keyed(text: str) -> str:
    """`text` sealed with the message keys when encryption is on (patients' words kept or
    passed outside the database: Redis session memory, live events between workers)."""
    sealer = cipher()
    return sealer.seal(text) if sealer is not None else text


def open_if_sealed(item: str) -> str:
    """The text of `seal_if_keyed` (plain text, from before encryption was on, as it is)."""
    if not item.startswith(PREFIX):
        return item
    sealer = cipher()
    if sealer is None:
        raise UndecryptableText("this entry is encrypted: set CAREBOT_MESSAGE_KEYS")
    return sealer.open(item)
