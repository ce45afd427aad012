"""The SessionStore contract: a cache of each chat's recent turns (the database is the record)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from bot.models import utcnow


class Turn(BaseModel):
    """One line of the conversation as the engine remembers it."""

    role: Literal["patient", "bot", "doctor"]
    text: str
    at: datetime = Field(default_factory=utcnow)
    asked: list[str] = Field(
        default_factory=list, description="Triage question ids a bot turn asked."
    )
    message_id: int | None = Field(
        default=None, description="The stored message's database id (None: not stored)."
    )


class SessionStore(ABC):
    """Recent turns per chat key, expiring after a TTL of inactivity; may vanish any time."""

    def __init__(self, ttl_s: int, max_turns: int) -> None:
        self.ttl_s = ttl_s
        self.max_turns = max_turns

    @abstractmethod
    async def append(self, chat_key: str, *turns: Turn) -> None:
        """Add turns to the chat's history, keep only the last `max_turns`, refresh the TTL."""

    @abstractmethod
    async def history(self, chat_key: str, limit: int | None = None) -> list[Turn]:
        """Return the last `limit` turns (all kept turns when None), oldest first."""

    @abstractmethod
    async def forget(self, chat_key: str) -> None:
        """Delete everything kept for the chat."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise MemoryUnavailable if the store cannot be reached."""

    async def aclose(self) -> None:  # noqa: B027  (optional hook: most stores hold nothing)
        """Release connections; the default store holds none."""
