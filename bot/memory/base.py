"""The SessionStore contract that every session-memory backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from bot.models import utcnow

Mode = Literal["bot", "waiting_for_doctor", "with_doctor"]


class Turn(BaseModel):
    """One line of the conversation as the engine remembers it."""

    role: Literal["patient", "bot", "doctor"]
    text: str
    at: datetime = Field(default_factory=utcnow)
    asked: list[str] = Field(
        default_factory=list, description="Triage question ids a bot turn asked."
    )


class SessionState(BaseModel):
    """Per-chat state kept between messages (history is stored beside it)."""

    consent: bool = False
    language: str | None = None
    mode: Mode = "bot"
    escalation_id: int | None = None
    announced_flags: list[str] = Field(
        default_factory=list, description="Red-flag rules the patient was already warned about."
    )
    pending_message_id: int | None = Field(
        default=None, description="A question held back until the patient consents."
    )
    pending_text: str | None = None
    followup_rounds: int = Field(
        default=0, description="Triage question rounds for this complaint."
    )


class SessionStore(ABC):
    """Recent history and state per chat key, expiring after a TTL of inactivity."""

    def __init__(self, ttl_s: int, max_turns: int) -> None:
        self.ttl_s = ttl_s
        self.max_turns = max_turns

    @abstractmethod
    async def get_state(self, chat_key: str) -> SessionState | None:
        """Return the chat's state, or None if unknown or expired."""

    @abstractmethod
    async def set_state(self, chat_key: str, state: SessionState) -> None:
        """Replace the chat's state and refresh its TTL."""

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
