"""SQLModel tables; every schema change also gets an Alembic migration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, UniqueConstraint
from sqlmodel import Field, SQLModel

from bot.models import utcnow
from bot.storage.encryption import SealedJSON, SealedText

# SQLite reuses the id of a deleted newest row; a forgotten patient's case id must never come
# back (its audit trail and the doctors' old alert buttons point at it). Other databases'
# sequences never reuse ids.
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), **kw))


class Patient(SQLModel, table=True):
    """A patient as seen on one channel, known by a pseudonym, never by name."""

    __tablename__ = "patients"
    __table_args__ = (UniqueConstraint("channel", "channel_user_id"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    pseudonym: str = Field(index=True, unique=True, max_length=32)
    channel: str = Field(max_length=32)
    channel_user_id: str = Field(max_length=128)
    language: str | None = Field(default=None, max_length=16)
    consent_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    created_at: datetime = _ts(nullable=False)
    # When the chat transcript was last erased while the clinical record stayed (see
    # bot/storage/clinical_record.py); None: never.
    transcript_erased_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class Conversation(SQLModel, table=True):
    """One chat between a patient and CareBot on a channel."""

    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("channel", "chat_id"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patients.id", index=True)
    channel: str = Field(max_length=32)
    chat_id: str = Field(max_length=128)
    started_at: datetime = _ts(nullable=False)
    last_message_at: datetime = _ts(nullable=False)
    state: dict[str, Any] | None = Field(
        default=None,
        sa_column=Column(SealedJSON, nullable=True),
        description="The chat's record between messages (bot.models.ChatState.kept()).",
    )


class Message(SQLModel, table=True):
    """A message in either direction; incoming ones are stored before processing."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "direction", "channel_message_id"),
        NEVER_REUSE_IDS,
    )

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversations.id", index=True)
    direction: str = Field(max_length=8, description="in | out")
    channel_message_id: str = Field(max_length=128)
    reply_to_id: int | None = Field(default=None, foreign_key="messages.id")
    # Encrypted at rest when CAREBOT_MESSAGE_KEYS is set (bot/storage/encryption.py).
    text: str = Field(sa_column=Column(SealedText, nullable=False))
    status: str = Field(default="received", max_length=16, description="received|answered|failed")
    kind: str | None = Field(default=None, max_length=16)
    triage_level: str | None = Field(default=None, max_length=16)
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(SealedJSON, nullable=False))
    created_at: datetime = _ts(nullable=False)


class Escalation(SQLModel, table=True):
    """A case handed to doctors: open -> claimed -> resolved, or open -> expired."""

    __tablename__ = "escalations"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversations.id", index=True)
    patient_id: int = Field(foreign_key="patients.id", index=True)
    level: str = Field(max_length=16)
    # Sealed: a rule id next to a patient ("pregnancy bleeding", "suicidal thoughts") is
    # health data as much as the words are.
    reasons: list[str] = Field(default_factory=list, sa_column=Column(SealedJSON, nullable=False))
    summary: str = Field(default="", sa_column=Column(SealedText, nullable=False))
    status: str = Field(default="open", max_length=16, description="open|claimed|resolved|expired")
    opened_by: str = Field(default="triage", max_length=32)
    claimed_by: str | None = Field(default=None, max_length=64)
    outcome: str | None = Field(default=None, sa_column=Column(SealedText, nullable=True))
    created_at: datetime = _ts(nullable=False)
    claimed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    closed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    disposition: str | None = Field(default=None, max_length=32)
    summary_source: str = Field(default="", max_length=16, description="llm | rules")
    claimed_by_telegram_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, nullable=True)
    )
    claimed_by_staff_id: int | None = None
    alert_message_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    alert_count: int = 0
    next_alert_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), index=True)
    )
    alert_error: str | None = Field(
        default=None, max_length=64, description="Why the last doctors' alert did not go out."
    )
    alert_failures: int = 0
    alert_retry_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), index=True)
    )


class DoctorChatMessage(SQLModel, table=True):
    """A message the bot sent to doctors about a case (an alert in the group, a patient's
    message relayed to the doctor holding it), kept so that erasing the patient can blank it
    in the doctors' chats too."""

    __tablename__ = "doctor_chat_messages"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(index=True)  # no foreign key: the row outlives nothing, see forget
    chat_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    message_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    kind: str = Field(max_length=16, description="alert | relay")
    sent_at: datetime = _ts(nullable=False)


class StaffUser(SQLModel, table=True):
    """A doctor, operator or admin who signs in to the dashboard."""

    __tablename__ = "staff_users"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True, index=True)
    display_name: str = Field(max_length=128)
    role: str = Field(max_length=16, description="doctor | operator | admin")
    password_hash: str = Field(max_length=256)
    telegram_user_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, nullable=True, unique=True)
    )
    failed_logins: int = 0
    locked_until: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    disabled: bool = False
    created_at: datetime = _ts(nullable=False)
    # A one-time code the staff member sends to the bot to link their Telegram account.
    telegram_link_hash: str | None = Field(default=None, max_length=64, index=True)
    telegram_link_expires_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    # The optional second factor (TOTP): the shared secret once confirmed, the one being set
    # up, and the last time step used (each code works once).
    # Sealed with the message keys when they are set: a copied database mints no codes.
    totp_secret: str | None = Field(default=None, sa_column=Column(SealedText(256), nullable=True))
    totp_pending_secret: str | None = Field(
        default=None, sa_column=Column(SealedText(256), nullable=True)
    )
    totp_last_step: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class AuditEvent(SQLModel, table=True):
    """Who did what to which record, and why."""

    __tablename__ = "audit_events"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(nullable=False, index=True)
    actor: str = Field(max_length=64)
    action: str = Field(max_length=64)
    subject_type: str = Field(max_length=32)
    subject_id: str = Field(max_length=64)
    details: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(SealedJSON, nullable=False)
    )
    # Tamper evidence (bot/storage/audit_chain.py): the digest of the details as written
    # (details may later be redacted by erasure or retention, the digest stays), and this
    # event's link in the chain, over the previous event's link.
    details_digest: str | None = Field(default=None, max_length=64)
    chain_hash: str | None = Field(default=None, max_length=64)


class AuditChainHead(SQLModel, table=True):
    """The newest link of the audit chain: one row, locked while events are appended, so
    the chain has one order across processes."""

    __tablename__ = "audit_chain_head"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int = Field(default=1, primary_key=True)
    chain_hash: str = Field(max_length=64)
    event_id: int | None = None


class ChannelUpdate(SQLModel, table=True):
    """A raw update from a channel (a Telegram update), kept until it has been handled.

    The channel confirms an update to its platform once it is written here, so a crash or
    restart replays it from this table and a redelivered update is recognised by its id.
    The payload (which holds patient text) is cleared once the update is done.
    """

    __tablename__ = "channel_updates"
    __table_args__ = (UniqueConstraint("channel", "update_id"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    update_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    chat_id: str | None = Field(default=None, max_length=128, index=True)
    status: str = Field(
        default="received", max_length=16, description="received|done|failed|undeliverable"
    )
    payload: dict[str, Any] | None = Field(
        default=None, sa_column=Column(SealedJSON, nullable=True)
    )
    received_at: datetime = _ts(nullable=False)
    done_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    attempts: int = Field(default=0, description="Times handling failed so far.")
    next_attempt_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), index=True)
    )


class StaffSession(SQLModel, table=True):
    """A dashboard sign-in: the browser holds the token, the table only its SHA-256."""

    __tablename__ = "staff_sessions"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    staff_id: int = Field(foreign_key="staff_users.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = _ts(nullable=False)
    last_seen_at: datetime = _ts(nullable=False)


class StaffLoginChallenge(SQLModel, table=True):
    """A sign-in waiting for its second factor: the password was right, the code is due."""

    __tablename__ = "staff_login_challenges"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    staff_id: int = Field(foreign_key="staff_users.id", index=True)
    created_at: datetime = _ts(nullable=False)
    failures: int = 0


class StaffRecoveryCode(SQLModel, table=True):
    """A one-time recovery code for an account with two-step sign-in (a lost phone without an
    administrator at hand): only its SHA-256 is kept, and when it was used."""

    __tablename__ = "staff_recovery_codes"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    staff_id: int = Field(foreign_key="staff_users.id", index=True)
    code_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = _ts(nullable=False)
    used_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class PendingErasure(SQLModel, table=True):
    """A patient's session memory that could not be erased when they (or the retention job)
    were: retried until the memory store confirms it (bot/memory/erasure.py)."""

    __tablename__ = "pending_erasures"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    chat_key: str = Field(max_length=200, index=True)
    requested_at: datetime = _ts(nullable=False)


class LegalHold(SQLModel, table=True):
    """A hold on a patient's data: while it is in force nothing of theirs is erased, not by
    /forget, the retention job or an approved erasure request."""

    __tablename__ = "legal_holds"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patients.id", index=True)
    reason: str = Field(sa_column=Column(SealedText, nullable=False))
    placed_by: str = Field(max_length=64)
    placed_at: datetime = _ts(nullable=False)
    released_by: str | None = Field(default=None, max_length=64)
    released_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class ErasureRequest(SQLModel, table=True):
    """A patient's request to erase their clinical record, waiting for an administrator's
    decision. No foreign key: the request outlives the record it asked to erase."""

    __tablename__ = "erasure_requests"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(index=True)
    pseudonym: str = Field(max_length=32)
    requested_at: datetime = _ts(nullable=False)
    status: str = Field(default="pending", max_length=16, index=True)  # pending|erased|kept
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    reason: str | None = Field(default=None, sa_column=Column(SealedText, nullable=True))


class GuidelineApproval(SQLModel, table=True):
    """A guideline file (by the SHA-256 of its bytes) proposed for the index by one staff
    account and approved or rejected by another: pages change answers and triage criteria."""

    __tablename__ = "guideline_approvals"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    digest: str = Field(max_length=64, index=True)
    path: str = Field(max_length=1000)
    status: str = Field(default="pending", max_length=16, index=True)  # |approved|rejected
    proposed_by: str = Field(max_length=128)
    proposer_key: str = Field(max_length=64)  # the account, for "a second account"
    proposed_at: datetime = _ts(nullable=False)
    decided_by: str | None = Field(default=None, max_length=128)
    decided_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    note: str = ""


class ChatLease(SQLModel, table=True):
    """Which worker is handling a chat's kept updates now, and until when (renewed while it
    works): one chat's messages one at a time and in order, whichever worker received them.
    A worker that dies stops renewing; once `until` passes another takes the chat over."""

    __tablename__ = "chat_leases"

    # Keyed by the chat itself: every take and renewal is an upsert, and on PostgreSQL each
    # would use up a value of an id sequence (a 32-bit one runs out within weeks).
    channel: str = Field(max_length=32, primary_key=True)
    chat_id: str = Field(max_length=128, primary_key=True)
    holder: str = Field(max_length=64)
    until: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class DeliveryCursor(SQLModel, table=True):
    """How far a feed read from the audit log has been delivered (the last event id), so a
    restart neither repeats nor skips (administrators' security alerts)."""

    __tablename__ = "delivery_cursors"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    position: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class PromptVersion(SQLModel, table=True):
    """A published version of a prompt; the files in prompts/ are version 1."""

    __tablename__ = "prompt_versions"
    __table_args__ = (UniqueConstraint("name", "version"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, index=True)
    version: int
    source: str
    author: str = Field(max_length=128)
    note: str = ""
    active: bool = False
    created_at: datetime = _ts(nullable=False)
    approved_by: str | None = Field(default=None, max_length=128)


class PromptApproval(SQLModel, table=True):
    """A change to a safety-critical prompt, waiting for a second account's approval."""

    __tablename__ = "prompt_approvals"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, index=True)
    source: str
    base_version: int
    note: str = ""
    action: str = Field(max_length=16)  # what approval does: "published" or "rolled_back"
    restored: int | None = None  # the version a rollback brings back
    changes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    author: str = Field(max_length=128)
    author_key: str = Field(max_length=64)  # the account, for "a second account"
    status: str = Field(default="pending", max_length=16, index=True)
    requested_at: datetime = _ts(nullable=False)
    decided_by: str | None = Field(default=None, max_length=128)
    decided_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    decision_note: str = ""
    version: int | None = None  # the version it became


class PromptDraft(SQLModel, table=True):
    """An operator's unpublished edit of a prompt (kept across restarts)."""

    __tablename__ = "prompt_drafts"
    __table_args__ = (UniqueConstraint("name", "author"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    author: str = Field(max_length=128)
    source: str
    base_version: int
    updated_at: datetime = _ts(nullable=False)
