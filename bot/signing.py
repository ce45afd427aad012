"""The server's signing key, and HMAC signatures made with it for one purpose each.

Cookies that grant something (a web chat, a browser known to a staff account) carry a
signature so that only values this server issued are honoured. The key comes from
`CAREBOT_SIGNING_KEY` (set it when several hosts serve one CareBot), or is made once in the
data folder (`signing.key`, readable by CareBot's user only) and shared by every process on
that folder. A new key invalidates every such cookie: web chats start afresh, staff
browsers are no longer known devices.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from bot.config import Settings

KEY_FILE = "signing.key"
SIGNATURE_BYTES = 16  # 128 bits: far beyond guessing over HTTP


def b64(data: bytes) -> str:
    """URL-safe base64 without padding (cookie-safe)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Signer:
    """Sign and check values for one purpose (a signature for one never passes another)."""

    def __init__(self, key: bytes, purpose: str) -> None:
        if len(key) < 32:
            raise ValueError("the signing key needs at least 32 bytes")
        self._key, self._purpose = key, purpose

    @classmethod
    def of(cls, settings: Settings, purpose: str) -> Signer:
        """A signer with the configured key, or the one kept in the data folder."""
        if settings.signing_key is not None:
            return cls(settings.signing_key.get_secret_value().encode(), purpose)
        return cls(_key_file(settings.data_dir / KEY_FILE), purpose)

    def sign(self, value: str) -> str:
        """The signature of `value` for this purpose."""
        message = f"{self._purpose}\n{value}".encode()
        return b64(hmac.new(self._key, message, hashlib.sha256).digest()[:SIGNATURE_BYTES])

    def valid(self, value: str, signature: str) -> bool:
        """Whether `signature` is this server's for `value` (constant time)."""
        return hmac.compare_digest(signature, self.sign(value))


def _key_file(path: Path) -> bytes:
    """Read the key kept at `path`, making it (0600, atomically) when there is none."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = b64(secrets.token_bytes(32)).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return key
