"""Typed messages that cross module boundaries: what a channel hands in, what it gets back."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import BaseModel, Field


def utcnow() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class TriageLevel(StrEnum):
    """How soon a patient needs care; ordered from least to most urgent."""

    SELF_CARE = "self_care"
    ROUTINE = "routine"
    URGENT = "urgent"
    EMERGENCY = "emergency"

    @property
    def rank(self) -> int:
        """Return the order of urgency (0 = self-care ... 3 = emergency)."""
        return _RANKS[self]

    @classmethod
    def highest(cls, *levels: TriageLevel | None) -> TriageLevel | None:
        """Return the most urgent of the given levels (None when all are None)."""
        present = [level for level in levels if level is not None]
        return max(present, key=lambda level: level.rank) if present else None


_RANKS = {
    TriageLevel.SELF_CARE: 0,
    TriageLevel.ROUTINE: 1,
    TriageLevel.URGENT: 2,
    TriageLevel.EMERGENCY: 3,
}


class Warned(BaseModel):
    """An emergency instruction sent before the turn started (bot.early_warning)."""

    flags: list[str]
    text: str


class IncomingMessage(BaseModel):
    """One patient message as a channel adapter hands it to the engine."""

    channel: str = Field(min_length=1, max_length=32)
    chat_id: str = Field(min_length=1, max_length=128)
    user_id: str = Field(min_length=1, max_length=128)
    message_id: str = Field(min_length=1, max_length=128)
    text: str = ""
    language: str | None = None
    attachments: list[str] = Field(default_factory=list)
    consent: bool = Field(default=False, description="The channel already obtained consent.")
    received_at: datetime = Field(default_factory=utcnow)
    warned: Warned | None = Field(
        default=None, description="An emergency instruction already sent ahead of this turn."
    )

    @property
    def chat_key(self) -> str:
        """Return the channel-qualified chat identifier used by memory and locks."""
        return f"{self.channel}:{self.chat_id}"


class Citation(BaseModel):
    """A guideline passage an answer relies on, shown to the patient as [n]."""

    number: int
    title: str
    source: str
    section: str
    path: str


class Evidence(BaseModel):
    """Where a finding was read: the patient's words, and how they were matched."""

    finding: str
    text: str = Field(description="The words that matched (patient text: never logged).")
    message: int = Field(default=0, description="Index of the patient message it came from.")
    start: int = 0
    end: int = 0
    flags: list[str] = Field(default_factory=list, description="ConText flags, e.g. possible.")
    source: str = Field(default="lexicon", description="lexicon | semantic | answer | vitals")
    exemplar: str | None = Field(default=None, description="The exemplar a meaning match hit.")
    similarity: float | None = None


class RedFlagHit(BaseModel):
    """A red-flag rule that fired, with its level and patient-facing explanation."""

    rule_id: str
    level: TriageLevel
    explanation: str
    evidence: list[Evidence] = Field(default_factory=list)
    citation: str | None = Field(
        default=None,
        description="For a guideline page's criterion: the page's title and clinical source.",
    )


class Reply(BaseModel):
    """What the engine answers to one incoming message."""

    text: str
    kind: str = Field(description="consent | emergency | answer | notice | error")
    level: TriageLevel | None = None
    red_flags: list[RedFlagHit] = Field(default_factory=list)
    citations: list[Citation] = Field(default_factory=list)
    grounded: bool | None = None
    llm_error: str | None = None
    triage: dict[str, object] | None = Field(
        default=None, description="How the level was decided: rule ids, model level, missing facts."
    )
    duplicate: bool = False
    prompt_versions: dict[str, int] = Field(
        default_factory=dict, description="The version of each prompt in use for this reply."
    )
    message_id: int | None = Field(default=None, description="Database id of the stored reply.")
    shown: str = Field(
        default="", description="The start of `text` the patient already has (an early warning)."
    )

    def unsent(self) -> str:
        """What a channel still has to send: the text after what was shown ahead of it."""
        if self.shown and self.text.startswith(self.shown):
            return self.text[len(self.shown) :].strip()
        return self.text


ChatMode = Literal["bot", "waiting_for_doctor", "with_doctor"]


class ChatState(BaseModel):
    """Where a chat stands, as the database records it (session memory only caches history).

    `mode` and `escalation_id` are read from the chat's active case, `consent` from the
    patient; the rest is kept on the conversation row, written with each reply.
    """

    consent: bool = False
    language: str | None = None
    mode: ChatMode = "bot"
    escalation_id: int | None = None
    announced_flags: list[str] = Field(
        default_factory=list, description="Red-flag rules the patient was already warned about."
    )
    pending_text: str | None = Field(
        default=None, description="A question held back until consent or triage questions."
    )
    followup_rounds: int = Field(
        default=0, description="Triage question rounds for this complaint."
    )
    saved_at: datetime | None = Field(default=None, description="When the record was written.")

    # What the conversation row keeps; the rest has its own record (the case, the patient).
    KEPT: ClassVar[set[str]] = {
        "language",
        "announced_flags",
        "pending_text",
        "followup_rounds",
        "saved_at",
    }

    def kept(self) -> dict[str, object]:
        """The fields written to the conversation row, stamped now."""
        return self.model_copy(update={"saved_at": utcnow()}).model_dump(
            mode="json", include=self.KEPT
        )

    def expired(self) -> ChatState:
        """The state after the memory window passed: the case, consent and language stay."""
        return ChatState(
            consent=self.consent,
            language=self.language,
            mode=self.mode,
            escalation_id=self.escalation_id,
        )
