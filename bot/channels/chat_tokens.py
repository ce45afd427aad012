"""The web chat's tokens: issued by this server, signed, and refused when not.

A chat is whoever holds its token, so a token the server did not issue must not open one:
otherwise someone who plants a cookie value of their choosing in a patient's browser (a
shared computer, a sibling subdomain, a network that rewrites plain HTTP) reads everything
that patient then writes. Each token is 24 random bytes and a signature over them with the
server's key (bot/signing.py); a value without a valid signature starts a fresh chat.
"""

from __future__ import annotations

import secrets

from bot.config import Settings
from bot.signing import Signer, b64

RAW_BYTES = 24


class ChatTokens:
    """Issue and check signed chat tokens."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatTokens:
        """Tokens signed with the server's key."""
        return cls(Signer.of(settings, "web-chat"))

    def issue(self) -> str:
        """A new token for a browser that has none (or one this server did not issue)."""
        raw = b64(secrets.token_bytes(RAW_BYTES))
        return f"{raw}.{self._signer.sign(raw)}"

    def valid(self, token: str) -> bool:
        """Whether this server issued `token`."""
        raw, dot, signature = token.partition(".")
        if not dot or not raw or len(token) > 128:
            return False
        return self._signer.valid(raw, signature)
