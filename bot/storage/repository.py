"""The engine's view of the database: store before processing, idempotent on message ids."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import event, func, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, col, create_engine, delete, select, update

import bot.storage.audit_chain  # noqa: F401  (registers the audit chain's hooks)
from bot import metrics
from bot.errors import StorageUnavailable
from bot.memory.base import Turn
from bot.models import ChatState, IncomingMessage, Reply, TriageLevel, utcnow
from bot.storage.encryption import UndecryptableText
from bot.storage.tables import (
    AuditEvent,
    ChannelUpdate,
    Conversation,
    DoctorChatMessage,
    ErasureRequest,
    Escalation,
    LegalHold,
    Message,
    Patient,
)
from bot.workers import SQLITE, STORAGE, WorkerPool

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class StoredIncoming:
    """The stored form of an incoming message, and any reply already sent to it."""

    message_id: int
    conversation_id: int
    patient_id: int
    pseudonym: str
    consented: bool
    duplicate: bool
    previous_reply: str | None
    state: ChatState = field(default_factory=ChatState)
    last_message_id: int | None = None  # the conversation's newest message before this one
    previous_delivered: bool = False  # the channel confirmed the previous reply reached them
    previous_reply_id: int | None = None
    # A send of the previous reply began and was never confirmed (the process died mid-send):
    # it may or may not have reached the patient. Its triage level says whether to repeat it.
    previous_unconfirmed: bool = False
    previous_level: str | None = None


def make_engine(url: str, busy_timeout_s: float = 5.0, pool_size: int = 8) -> Engine:
    """Create the SQLAlchemy engine; SQLite gets WAL, a bounded wait for locks, owner-only
    files and deleted data overwritten; a server database a pool of `pool_size` connections
    (and as many again for a burst), each checked before use."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            owner_only_folder(Path(path).parent)
        engine = create_engine(
            url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # A forgotten patient's text is overwritten with zeros, not left in free pages
            # (and in the WAL until a checkpoint) for anyone with the file to read back.
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()

        return engine
    return create_engine(
        url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size, pool_timeout=10
    )


def owner_only_folder(folder: Path) -> None:
    """Create `folder` (or narrow it) so only CareBot's user can enter it: the database, its
    WAL and the indexes hold patients' words. Files CareBot creates are owner-only through
    the umask `carebot` sets at start (bot/cli.py)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):  # a folder we do not own (a mounted volume) is left
        folder.chmod(0o700)


class Storage:
    """Async facade over the SQL database; every failure becomes StorageUnavailable."""

    def __init__(self, engine: Engine, pool: WorkerPool | None = None) -> None:
        self.engine = engine
        # SQLite: one thread, so calls take its single write lock in turn instead of sleeping
        # in its busy handler (see bot.workers).
        self.pool = pool or (SQLITE if engine.dialect.name == "sqlite" else STORAGE)

    async def run(self, fn: Callable[[Session], T]) -> T:
        def work() -> T:
            with Session(self.engine, expire_on_commit=False) as session:
                return fn(session)

        try:
            return await self.pool.run(work)
        except (SQLAlchemyError, UndecryptableText) as exc:
            logger.error("database error: %s", type(exc).__name__)
            metrics.DEPENDENCY_ERRORS.labels("database").inc()
            raise StorageUnavailable(type(exc).__name__) from exc

    async def record_incoming(self, msg: IncomingMessage) -> StoredIncoming:
        """Store an incoming message once; a repeat returns the first copy and its reply."""
        return await self.run(lambda s: _record_incoming(s, msg))

    async def record_reply(
        self,
        stored: StoredIncoming,
        reply: Reply,
        meta: dict[str, Any],
        state: ChatState | None = None,
    ) -> int:
        """Store the reply (and the chat's state) in one transaction; mark the message answered."""
        return await self.run(lambda s: _record_reply(s, stored, reply, meta, state))

    async def save_state(self, conversation_id: int, state: ChatState) -> None:
        """Write the chat's state (a turn that kept a message without a reply)."""

        def work(s: Session) -> None:
            conv = s.get(Conversation, conversation_id)
            if conv is not None:
                conv.state = state.kept()
                s.add(conv)
                s.commit()

        await self.run(work)

    async def mark_sending(self, reply_id: int, sending: bool = True) -> None:
        """Record that a send of a stored reply begins (or, `sending` False, that it failed
        and nothing of it landed): after a crash, "sending" means "may have arrived"."""

        def work(s: Session) -> None:
            row = s.get(Message, reply_id)
            if row is not None and row.status != "delivered":
                row.status = "sending" if sending else "sent"
                s.add(row)
                s.commit()

        await self.run(work)

    async def mark_delivered(self, reply_id: int, channel_ids: list[int]) -> None:
        """Record that a reply reached the patient (a replay must not send it again)."""

        def work(s: Session) -> None:
            row = s.get(Message, reply_id)
            if row is not None:
                row.status = "delivered"
                row.meta = {**row.meta, "delivered_ids": channel_ids}
                s.add(row)
                s.commit()

        await self.run(work)

    async def record_consent(self, patient_id: int) -> None:
        """Remember that the patient accepted the consent terms."""

        def work(s: Session) -> None:
            patient = s.get(Patient, patient_id)
            if patient is not None and patient.consent_at is None:
                patient.consent_at = utcnow()
                s.add(patient)
                s.add(audit_event("patient", "consent.given", "patient", str(patient_id)))
                s.commit()

        await self.run(work)

    async def open_escalation(
        self, stored: StoredIncoming, level: TriageLevel, reasons: list[str], opened_by: str
    ) -> int:
        """Open an escalation for the conversation, unless one is already open; return its id."""

        def work(s: Session) -> int:
            return open_case(
                s, stored.conversation_id, stored.patient_id, level, reasons, opened_by, opened_by
            )

        return await self.run(work)

    async def recent_turns(
        self,
        conversation_id: int,
        limit: int,
        before_id: int | None = None,
        window_s: float | None = None,
    ) -> list[Turn]:
        """The last `limit` messages of a conversation before `before_id`, oldest first.

        With `window_s`, a silence longer than that ends the memory: only the messages after
        the last such gap are returned (what session memory with that TTL would still hold).
        """

        def work(s: Session) -> list[Turn]:
            query = select(Message).where(Message.conversation_id == conversation_id)
            if before_id is not None:
                query = query.where(col(Message.id) < before_id)
            rows = list(s.exec(query.order_by(col(Message.id).desc()).limit(limit)).all())
            kept: list[Message] = []
            newer = utcnow()
            for m in rows:  # newest first
                if (
                    window_s is not None
                    and (newer - _aware(m.created_at)).total_seconds() > window_s
                ):
                    break
                kept.append(m)
                newer = _aware(m.created_at)
            return [_turn(m) for m in reversed(kept)]

        return await self.run(work)

    async def chat_turns(self, channel: str, chat_id: str, limit: int) -> list[Turn]:
        """The last `limit` messages of a chat (both directions, doctors' too), oldest first."""

        def work(s: Session) -> list[Turn]:
            conv = s.exec(
                select(Conversation).where(
                    Conversation.channel == channel, Conversation.chat_id == chat_id
                )
            ).first()
            if conv is None:
                return []
            rows = s.exec(
                select(Message)
                .where(Message.conversation_id == conv.id, Message.text != "")
                .order_by(col(Message.id).desc())
                .limit(limit)
            ).all()
            return [_turn(m) for m in reversed(rows)]

        return await self.run(work)

    async def mark(self, message_id: int, status: str, reason: str | None = None) -> None:
        """Set an incoming message's status (failed, throttled) so it can be reviewed."""

        def work(s: Session) -> None:
            row = s.get(Message, message_id)
            if row is not None:
                row.status = status
                if reason:
                    row.meta = {**row.meta, "reason": reason}
                s.add(row)
                s.commit()

        await self.run(work)

    async def set_language(self, patient_id: int, language: str) -> None:
        """Remember the language the patient chose."""

        def work(s: Session) -> None:
            patient = s.get(Patient, patient_id)
            if patient is not None:
                patient.language = language
                s.add(patient)
                s.commit()

        await self.run(work)

    async def forget_patient(
        self, channel: str, user_id: str, keep_record: bool = True
    ) -> Forgotten:
        """Delete what may go of a patient (with `keep_record`, their clinical record stays
        and their request to erase it is filed: bot/storage/clinical_record.py); return what
        was deleted and the bot's messages in doctors' chats that still show them (for the
        channel to blank).

        The audit log keeps that a pseudonymous patient was forgotten, and when; the events
        of erased cases keep who did what and when, but not the details (outcome notes).
        """
        from bot.storage.clinical_record import erase_patient

        erased = await self.run(
            lambda s: erase_patient(s, channel, user_id, "patient", keep_record)
        )
        if erased.case_ids or erased.counts:
            await self.scrub()
        return erased

    async def scrub(self) -> None:
        """After erasing: move SQLite's WAL into the database and empty it, so the old page
        versions it kept (patient text included) are gone too; secure_delete has already
        zeroed the freed space. A reader holding an old snapshot can keep part of the WAL
        for a moment: the next erasure or checkpoint then finishes the job."""
        if self.engine.dialect.name != "sqlite":
            return
        # The pragma answers with a row: read it, or its statement stays open on the pooled
        # connection and the next transaction's commit fails ("SQL statements in progress":
        # the message right after a /forget was lost to the database fallback, now and then).
        await self.run(lambda s: s.execute(text("PRAGMA wal_checkpoint(TRUNCATE)")).all())

    async def ping(self) -> None:
        """Check that the database answers."""
        await self.run(lambda s: s.exec(select(Patient.id).limit(1)).first())


def audit_event(
    actor: str, action: str, subject_type: str, subject_id: str, **details: Any
) -> AuditEvent:
    return AuditEvent(
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        details=details,
    )


def _patient_and_conversation(s: Session, msg: IncomingMessage) -> tuple[Patient, Conversation]:
    patient = s.exec(
        select(Patient).where(
            Patient.channel == msg.channel, Patient.channel_user_id == msg.user_id
        )
    ).first()
    if patient is None:
        patient = Patient(
            pseudonym=uuid.uuid4().hex[:16],
            channel=msg.channel,
            channel_user_id=msg.user_id,
            language=msg.language,
        )
        s.add(patient)
        s.flush()
    conv = s.exec(
        select(Conversation).where(
            Conversation.channel == msg.channel, Conversation.chat_id == msg.chat_id
        )
    ).first()
    if conv is None:
        assert patient.id is not None
        conv = Conversation(patient_id=patient.id, channel=msg.channel, chat_id=msg.chat_id)
        s.add(conv)
        s.flush()
    return patient, conv


def _record_incoming(s: Session, msg: IncomingMessage) -> StoredIncoming:
    for attempt in range(2):
        try:
            patient, conv = _patient_and_conversation(s, msg)
            assert patient.id is not None and conv.id is not None
            existing = s.exec(
                select(Message).where(
                    Message.conversation_id == conv.id,
                    Message.direction == "in",
                    Message.channel_message_id == msg.message_id,
                )
            ).first()
            if existing is not None:
                assert existing.id is not None
                reply = s.exec(select(Message).where(Message.reply_to_id == existing.id)).first()
                return StoredIncoming(
                    existing.id,
                    conv.id,
                    patient.id,
                    patient.pseudonym,
                    patient.consent_at is not None,
                    True,
                    reply.text if reply else None,
                    state=_chat_state(s, patient, conv),
                    previous_delivered=reply is not None and reply.status == "delivered",
                    previous_reply_id=reply.id if reply else None,
                    previous_unconfirmed=reply is not None and reply.status == "sending",
                    previous_level=reply.meta.get("level") if reply else None,
                )
            last_id = s.exec(
                select(func.max(Message.id)).where(Message.conversation_id == conv.id)
            ).one()
            row = Message(
                conversation_id=conv.id,
                direction="in",
                channel_message_id=msg.message_id,
                text=msg.text,
                created_at=msg.received_at,
                meta={"attachments": msg.attachments} if msg.attachments else {},
            )
            conv.last_message_at = utcnow()
            s.add(row)
            s.add(conv)
            s.commit()
            assert row.id is not None
            return StoredIncoming(
                row.id,
                conv.id,
                patient.id,
                patient.pseudonym,
                patient.consent_at is not None,
                False,
                None,
                state=_chat_state(s, patient, conv),
                last_message_id=last_id,
            )
        except IntegrityError:
            # Another worker stored the same patient, chat or message first: read theirs.
            s.rollback()
            if attempt:
                raise
    raise AssertionError("unreachable")


def _chat_state(s: Session, patient: Patient, conv: Conversation) -> ChatState:
    """The chat's record: the conversation row's state, its active case, the patient's consent."""
    try:
        state = ChatState.model_validate(conv.state or {})
    except ValidationError:
        # A state written by an incompatible version starts over rather than failing the chat.
        logger.warning("conversation %s: unreadable state; starting afresh", conv.id)
        state = ChatState()
    case = s.exec(
        select(Escalation.id, Escalation.status)
        .where(
            Escalation.conversation_id == conv.id,
            col(Escalation.status).in_(["open", "claimed"]),
        )
        .order_by(col(Escalation.id).desc())
    ).first()
    if case is not None:
        state.escalation_id = case[0]
        state.mode = "with_doctor" if case[1] == "claimed" else "waiting_for_doctor"
    state.consent = patient.consent_at is not None
    state.language = state.language or patient.language
    return state


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # SQLite returns naive UTC


def _turn(m: Message) -> Turn:
    role = "patient" if m.direction == "in" else "doctor" if m.kind == "doctor" else "bot"
    return Turn(
        role=role,
        text=m.text,
        at=_aware(m.created_at),
        asked=_asked_in(m.meta),
        message_id=m.id,
    )


def _record_reply(
    s: Session, stored: StoredIncoming, reply: Reply, meta: dict[str, Any], state: ChatState | None
) -> int:
    row = Message(
        conversation_id=stored.conversation_id,
        direction="out",
        channel_message_id=f"reply-{stored.message_id}",
        reply_to_id=stored.message_id,
        text=reply.text,
        status="sent",
        kind=reply.kind,
        triage_level=reply.level.value if reply.level else None,
        meta=meta,
    )
    s.add(row)
    incoming = s.get(Message, stored.message_id)
    if incoming is not None:
        incoming.status = "answered"
        incoming.triage_level = reply.level.value if reply.level else None
        s.add(incoming)
    conv = s.get(Conversation, stored.conversation_id) if state is not None else None
    if conv is not None and state is not None:
        conv.state = state.kept()
        s.add(conv)
    s.commit()
    assert row.id is not None
    return row.id


@dataclass(frozen=True)
class Forgotten:
    """What erasing a patient deleted, and where the bot's own messages still show them."""

    counts: dict[str, int] = field(default_factory=dict)
    case_ids: list[int] = field(default_factory=list)
    doctor_messages: list[tuple[int, int]] = field(default_factory=list)  # (chat, message)
    chat_keys: list[str] = field(default_factory=list)  # session memory to erase too
    record_kept: bool = False  # the clinical record stayed (bot/storage/clinical_record.py)
    request_id: int | None = None  # the patient's request to erase it too, for review


REDACTED = {"redacted": "patient erased"}


def forget_patient_rows(s: Session, channel: str, user_id: str, by: str = "patient") -> Forgotten:
    """Erase one patient (`by` "patient" for /forget, "retention" for the retention job)."""
    patient = s.exec(
        select(Patient).where(Patient.channel == channel, Patient.channel_user_id == user_id)
    ).first()
    if patient is None or patient.id is None:
        return Forgotten()
    conversations = s.exec(select(Conversation).where(Conversation.patient_id == patient.id)).all()
    conv_ids = [c.id for c in conversations]
    chat_ids = [c.chat_id for c in conversations]
    case_ids = [
        i
        for i in s.exec(select(Escalation.id).where(Escalation.patient_id == patient.id)).all()
        if i is not None
    ]
    sent = s.exec(
        select(DoctorChatMessage).where(col(DoctorChatMessage.case_id).in_(case_ids))
    ).all()

    def gone(statement: Any) -> int:
        return int(s.execute(statement).rowcount)  # type: ignore[attr-defined]

    # The cases' audit events keep who did what and when; their details (outcome notes,
    # reasons given) may quote the patient and go.
    redacted = gone(
        update(AuditEvent)
        .where(
            col(AuditEvent.subject_type) == "escalation",
            col(AuditEvent.subject_id).in_([str(i) for i in case_ids]),
        )
        .values(details=REDACTED)
    )
    counts = {
        # Replies point at the messages they answer: delete them first.
        "messages": gone(
            delete(Message).where(
                col(Message.conversation_id).in_(conv_ids), col(Message.reply_to_id).is_not(None)
            )
        )
        + gone(delete(Message).where(col(Message.conversation_id).in_(conv_ids))),
        "escalations": gone(delete(Escalation).where(col(Escalation.patient_id) == patient.id)),
        "updates": gone(
            delete(ChannelUpdate).where(
                col(ChannelUpdate.channel) == channel, col(ChannelUpdate.chat_id).in_(chat_ids)
            )
        ),
        "conversations": len(conversations),
        "doctor_messages": gone(
            delete(DoctorChatMessage).where(col(DoctorChatMessage.case_id).in_(case_ids))
        ),
        "audit_details": redacted,
    }
    for conv in conversations:
        s.delete(conv)
    s.execute(delete(LegalHold).where(col(LegalHold.patient_id) == patient.id))  # released ones
    s.execute(  # a request to erase what is now erased is answered
        update(ErasureRequest)
        .where(
            col(ErasureRequest.patient_id) == patient.id, col(ErasureRequest.status) == "pending"
        )
        .values(status="erased", decided_by=by, decided_at=utcnow())
    )
    s.flush()
    s.delete(patient)
    s.add(audit_event(by, "patient.forgotten", "patient", patient.pseudonym, **counts))
    s.commit()
    keys = sorted({f"{channel}:{chat_id}" for chat_id in chat_ids})
    return Forgotten(counts, case_ids, [(m.chat_id, m.message_id) for m in sent], keys)


def open_case(
    s: Session,
    conversation_id: int,
    patient_id: int,
    level: TriageLevel,
    reasons: list[str],
    opened_by: str,
    actor: str,
) -> int:
    """Open a case on a conversation, or raise the level of the one already active."""
    existing = s.exec(
        select(Escalation).where(
            Escalation.conversation_id == conversation_id,
            col(Escalation.status).in_(["open", "claimed"]),
        )
    ).first()
    if existing is not None and existing.id is not None:
        if TriageLevel(existing.level).rank < level.rank:
            existing.level = level.value
            existing.reasons = sorted({*existing.reasons, *reasons})
            s.add(existing)
            s.add(audit_event(actor, "escalation.raised", "escalation", str(existing.id)))
            s.commit()
        return existing.id
    esc = Escalation(
        conversation_id=conversation_id,
        patient_id=patient_id,
        level=level.value,
        reasons=reasons,
        opened_by=opened_by,
    )
    s.add(esc)
    s.flush()
    assert esc.id is not None
    s.add(
        audit_event(
            actor,
            "escalation.opened",
            "escalation",
            str(esc.id),
            level=level.value,
            reasons=reasons,
        )
    )
    s.commit()
    return esc.id


def _asked_in(meta: dict[str, Any] | None) -> list[str]:
    """The triage question ids a stored reply asked (the record of the interview)."""
    triage = (meta or {}).get("triage")
    asked = triage.get("asked") if isinstance(triage, dict) else None
    return [str(q) for q in asked] if isinstance(asked, list) else []
