"""Typed views of cases, for the dashboard, the doctors' group and the tests."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from bot.models import TriageLevel, utcnow


class CaseStatus(StrEnum):
    """Where a case is in its life."""

    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"
    EXPIRED = "expired"


# A read of a case's text (page, stream, queue line, Telegram alert or relay): audit events
# with their own subject type, so a case's trail is not buried under who looked at it.
READ = "case.read"
READ_SUBJECT = "escalation_read"


class Actor(BaseModel):
    """Who acts on a case: a staff account, signed in to the dashboard or linked to Telegram."""

    name: str = Field(min_length=1, max_length=128)
    role: str = "doctor"
    staff_id: int | None = None
    telegram_id: int | None = None

    def holds(self, case: CaseView) -> bool:
        """Whether this actor is the one who claimed `case` (by account, not by name)."""
        if self.telegram_id is not None and case.claimed_by_telegram_id is not None:
            return self.telegram_id == case.claimed_by_telegram_id
        if self.staff_id is not None and case.claimed_by_staff_id is not None:
            return self.staff_id == case.claimed_by_staff_id
        return False

    @property
    def shown(self) -> str:
        """How patients see the actor: the staff account's name and role."""
        return f"{self.name} ({self.role})"

    @property
    def label(self) -> str:
        """How the actor appears in the audit log."""
        if self.staff_id is not None:
            return f"staff:{self.staff_id}"
        return f"telegram:{self.telegram_id}" if self.telegram_id else self.name


class CaseView(BaseModel):
    """One case in the queue."""

    id: int
    level: TriageLevel
    status: CaseStatus
    reasons: list[str]
    summary: str
    summary_source: str
    opened_by: str
    claimed_by: str | None
    claimed_by_telegram_id: int | None = None
    claimed_by_staff_id: int | None = None
    created_at: datetime
    channel: str
    chat_id: str
    pseudonym: str
    consented: bool = False

    def age_s(self, now: datetime | None = None) -> float:
        """Seconds since the case was opened."""
        created = self.created_at
        if created.tzinfo is None:  # SQLite returns naive UTC
            from datetime import UTC

            created = created.replace(tzinfo=UTC)
        return ((now or utcnow()) - created).total_seconds()


class TranscriptLine(BaseModel):
    """A message in the case's conversation."""

    role: str  # patient | bot | doctor
    text: str
    at: datetime
    author: str | None = None


class AuditLine(BaseModel):
    """A lifecycle event of the case."""

    at: datetime
    actor: str
    action: str
    details: dict[str, object]


class CaseDetail(BaseModel):
    """Everything a doctor sees on the case page."""

    case: CaseView
    transcript: list[TranscriptLine]
    audit: list[AuditLine]
    triage: dict[str, object] | None = None
    # Messages of the conversation left out because they belong to an earlier closed case.
    earlier_case: int | None = None
    earlier_hidden: int = 0


class ClaimOutcome(StrEnum):
    """What a claim attempt achieved."""

    CLAIMED = "claimed"
    ALREADY_YOURS = "already_yours"
    TAKEN = "taken"
    CLOSED = "closed"
    MISSING = "missing"
