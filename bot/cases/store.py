"""Cases in the database: every transition is one transaction with its audit event."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from bot.cases.models import (
    READ,
    READ_SUBJECT,
    Actor,
    AuditLine,
    CaseDetail,
    CaseStatus,
    CaseView,
    ClaimOutcome,
    TranscriptLine,
)
from bot.models import TriageLevel, utcnow
from bot.storage.repository import Storage, audit_event, open_case
from bot.storage.tables import (
    AuditEvent,
    Conversation,
    DoctorChatMessage,
    Escalation,
    Message,
    Patient,
)


class HasMessageId(Protocol):
    """A message a channel sent (a Telegram Message has its id)."""

    @property
    def message_id(self) -> int: ...


ACTIVE = (CaseStatus.OPEN.value, CaseStatus.CLAIMED.value)


def aware(at: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time CareBot stores is UTC."""
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def _view(
    s: Session,
    esc: Escalation,
    conv: Conversation | None = None,
    patient: Patient | None = None,
) -> CaseView:
    conv = conv or s.get(Conversation, esc.conversation_id)
    patient = patient or s.get(Patient, esc.patient_id)
    assert esc.id is not None and conv is not None and patient is not None
    return CaseView(
        id=esc.id,
        level=TriageLevel(esc.level),
        status=CaseStatus(esc.status),
        reasons=list(esc.reasons),
        summary=esc.summary,
        summary_source=esc.summary_source,
        opened_by=esc.opened_by,
        claimed_by=esc.claimed_by,
        claimed_by_telegram_id=esc.claimed_by_telegram_id,
        claimed_by_staff_id=esc.claimed_by_staff_id,
        created_at=aware(esc.created_at) or utcnow(),
        channel=conv.channel,
        chat_id=conv.chat_id,
        pseudonym=patient.pseudonym,
        consented=patient.consent_at is not None,
    )


class CaseStore:
    """Read and move cases."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def view(self, case_id: int) -> CaseView | None:
        """Return one case, or None."""

        def work(s: Session) -> CaseView | None:
            esc = s.get(Escalation, case_id)
            return _view(s, esc) if esc is not None else None

        return await self.storage.run(work)

    async def queue(self) -> list[CaseView]:
        """Open and claimed cases, most urgent first, then oldest first."""

        def work(s: Session) -> list[CaseView]:
            rows = s.exec(
                select(Escalation, Conversation, Patient)
                .join(Conversation, col(Conversation.id) == Escalation.conversation_id)
                .join(Patient, col(Patient.id) == Escalation.patient_id)
                .where(col(Escalation.status).in_(ACTIVE))
            ).all()
            views = [_view(s, e, c, p) for e, c, p in rows]
            return sorted(views, key=lambda v: (-v.level.rank, v.created_at))

        return await self.storage.run(work)

    async def detail(self, case_id: int) -> CaseDetail | None:
        """The case with its conversation, triage record and audit trail."""

        def work(s: Session) -> CaseDetail | None:
            esc = s.get(Escalation, case_id)
            if esc is None:
                return None
            # The conversation up to the end of an earlier closed case belongs to that case:
            # it opens only through that case's own page (breaking its glass, with a reason).
            earlier = s.exec(
                select(Escalation)
                .where(
                    Escalation.conversation_id == esc.conversation_id,
                    col(Escalation.id) < case_id,
                    col(Escalation.closed_at).is_not(None),
                )
                .order_by(col(Escalation.closed_at).desc())
                .limit(1)
            ).first()
            query = select(Message).where(Message.conversation_id == esc.conversation_id)
            hidden = 0
            if earlier is not None and earlier.closed_at is not None:
                before = Message.created_at <= earlier.closed_at
                hidden = len(
                    s.exec(
                        select(Message.id).where(
                            Message.conversation_id == esc.conversation_id, before
                        )
                    ).all()
                )
                query = query.where(Message.created_at > earlier.closed_at)
            messages = s.exec(query.order_by(col(Message.id))).all()
            transcript = [
                TranscriptLine(
                    role="patient"
                    if m.direction == "in"
                    else ("doctor" if m.kind == "doctor" else "bot"),
                    text=m.text,
                    at=aware(m.created_at) or utcnow(),
                    author=str(m.meta.get("doctor")) if m.kind == "doctor" else None,
                )
                for m in messages
                if m.text or m.direction == "in"
            ]
            triage = next(
                (m.meta.get("triage") for m in reversed(messages) if m.meta.get("triage")), None
            )
            events = s.exec(
                select(AuditEvent)
                .where(
                    AuditEvent.subject_type == "escalation", AuditEvent.subject_id == str(case_id)
                )
                .order_by(col(AuditEvent.id))
            ).all()
            audit = [
                AuditLine(
                    at=aware(e.at) or utcnow(), actor=e.actor, action=e.action, details=e.details
                )
                for e in events
            ]
            return CaseDetail(
                case=_view(s, esc),
                transcript=transcript,
                audit=audit,
                triage=triage,
                earlier_case=earlier.id if hidden and earlier is not None else None,
                earlier_hidden=hidden,
            )

        return await self.storage.run(work)

    async def claim(self, case_id: int, actor: Actor) -> tuple[ClaimOutcome, CaseView | None]:
        """Give an open case to one doctor; a second claim is refused."""

        def work(s: Session) -> tuple[ClaimOutcome, CaseView | None]:
            # One conditional UPDATE decides between doctors claiming at once: only the one
            # that still finds the case open changes it (SQLite ignores SELECT ... FOR UPDATE).
            claimed = s.exec(
                update(Escalation)
                .where(
                    col(Escalation.id) == case_id,
                    col(Escalation.status) == CaseStatus.OPEN.value,
                )
                .values(
                    status=CaseStatus.CLAIMED.value,
                    claimed_by=actor.name,
                    claimed_at=utcnow(),
                    claimed_by_telegram_id=actor.telegram_id,
                    claimed_by_staff_id=actor.staff_id,
                    next_alert_at=None,
                )
            )
            if claimed.rowcount == 1:
                s.add(
                    audit_event(
                        actor.label, "escalation.claimed", "escalation", str(case_id), by=actor.name
                    )
                )
            s.commit()
            esc = s.get(Escalation, case_id, populate_existing=True)
            if esc is None:
                return ClaimOutcome.MISSING, None
            view = _view(s, esc)
            if claimed.rowcount == 1:
                return ClaimOutcome.CLAIMED, view
            if esc.status == CaseStatus.CLAIMED.value:
                mine = actor.holds(view)
                return (ClaimOutcome.ALREADY_YOURS if mine else ClaimOutcome.TAKEN), view
            return ClaimOutcome.CLOSED, view

        return await self.storage.run(work)

    async def close(
        self,
        case_id: int,
        status: CaseStatus,
        actor: str,
        outcome: str,
        disposition: str | None = None,
    ) -> CaseView | None:
        """Resolve or expire an active case; None when it was not active."""

        def work(s: Session) -> CaseView | None:
            # Conditional, as a claim: of two closes at once (a doctor, the expiry sweep) one
            # wins and only that one is audited.
            closed = s.exec(
                update(Escalation)
                .where(col(Escalation.id) == case_id, col(Escalation.status).in_(ACTIVE))
                .values(
                    status=status.value,
                    outcome=outcome,
                    disposition=disposition,
                    closed_at=utcnow(),
                    next_alert_at=None,
                )
            )
            if closed.rowcount != 1:
                s.rollback()
                return None
            action = f"escalation.{status.value}"
            s.add(
                audit_event(
                    actor,
                    action,
                    "escalation",
                    str(case_id),
                    outcome=outcome,
                    disposition=disposition,
                )
            )
            s.commit()
            esc = s.get(Escalation, case_id, populate_existing=True)
            return _view(s, esc) if esc is not None else None

        return await self.storage.run(work)

    async def schedule(
        self,
        case_id: int,
        at: datetime | None,
        alert_message_id: int | None = None,
        alerted: bool = False,
        unconfirmed_at: datetime | None = None,
    ) -> None:
        """Set when the case is next re-alerted (or expired), and the alert message;
        `alerted` with `unconfirmed_at`: as in `first_alert`, for a re-alert."""

        def work(s: Session) -> None:
            esc = s.get(Escalation, case_id)
            if esc is None:
                return
            esc.next_alert_at = at
            if alert_message_id is not None:
                esc.alert_message_id = alert_message_id
            if alerted:
                esc.alert_count += 1
                esc.alert_retry_at = unconfirmed_at
                s.add(
                    audit_event(
                        "carebot",
                        "escalation.alerted",
                        "escalation",
                        str(case_id),
                        count=esc.alert_count,
                    )
                )
            s.add(esc)
            s.commit()

        await self.storage.run(work)

    async def open_for_chat(
        self, channel: str, chat_id: str, level: TriageLevel, reason: str, actor: str
    ) -> int | None:
        """Open a case on a conversation by hand (an operator); None for an unknown chat."""

        def work(s: Session) -> int | None:
            conv = s.exec(
                select(Conversation).where(
                    Conversation.channel == channel, Conversation.chat_id == chat_id
                )
            ).first()
            if conv is None or conv.id is None:
                return None
            return open_case(s, conv.id, conv.patient_id, level, [reason], "operator", actor)

        return await self.storage.run(work)

    async def take_over(
        self, case_id: int, actor: Actor, reason: str
    ) -> tuple[ClaimOutcome, CaseView | None]:
        """Move a claimed case to `actor` from the doctor who holds it, recording why."""

        def work(s: Session) -> tuple[ClaimOutcome, CaseView | None]:
            esc = s.get(Escalation, case_id, with_for_update=True)
            if esc is None:
                return ClaimOutcome.MISSING, None
            if esc.status != CaseStatus.CLAIMED.value:
                return ClaimOutcome.CLOSED, _view(s, esc)
            if actor.holds(_view(s, esc)):
                return ClaimOutcome.ALREADY_YOURS, _view(s, esc)
            before = esc.claimed_by
            esc.claimed_by, esc.claimed_at = actor.name, utcnow()
            esc.claimed_by_telegram_id, esc.claimed_by_staff_id = actor.telegram_id, actor.staff_id
            s.add(esc)
            s.add(
                audit_event(
                    actor.label,
                    "escalation.taken_over",
                    "escalation",
                    str(case_id),
                    by=actor.name,
                    previous=before,
                    reason=reason,
                )
            )
            s.commit()
            return ClaimOutcome.CLAIMED, _view(s, esc)

        return await self.storage.run(work)

    async def unannounced(self) -> list[int]:
        """Open cases no doctor was alerted to yet (opened by another process)."""

        def work(s: Session) -> list[int]:
            rows = s.exec(
                select(Escalation.id).where(
                    Escalation.status == CaseStatus.OPEN.value, Escalation.alert_count == 0
                )
            ).all()
            return [int(r) for r in rows if r is not None]

        return await self.storage.run(work)

    async def first_alert(
        self, case_id: int, next_at: datetime, unconfirmed_at: datetime | None = None
    ) -> bool:
        """Count the first alert of a new case; False when it was announced before.

        `unconfirmed_at`: when the alert is sent again unless `alert_sent` has confirmed it by
        then (the outbox: a process killed mid-send leaves it due, and the timers resend it).
        """

        def work(s: Session) -> bool:
            esc = s.get(Escalation, case_id, with_for_update=True)
            if esc is None or esc.alert_count > 0:
                return False
            esc.alert_count, esc.next_alert_at = 1, next_at
            esc.alert_retry_at = unconfirmed_at
            s.add(esc)
            s.add(audit_event("carebot", "escalation.alerted", "escalation", str(case_id), count=1))
            s.commit()
            return True

        return await self.storage.run(work)

    async def due(self, now: datetime) -> list[tuple[CaseView, int]]:
        """Open cases whose alert deadline has passed, with how many alerts they had."""

        def work(s: Session) -> list[tuple[CaseView, int]]:
            rows = s.exec(
                select(Escalation).where(
                    Escalation.status == CaseStatus.OPEN.value,
                    col(Escalation.next_alert_at).is_not(None),
                    col(Escalation.next_alert_at) <= now,
                )
            ).all()
            return [(_view(s, e), e.alert_count) for e in rows]

        return await self.storage.run(work)

    async def past_first_deadline(self) -> int:
        """Open cases still unclaimed after their first deadline (re-alerted at least once)."""

        def work(s: Session) -> int:
            return int(
                s.exec(
                    select(func.count())
                    .select_from(Escalation)
                    .where(Escalation.status == CaseStatus.OPEN.value, Escalation.alert_count > 1)
                ).one()
            )

        return await self.storage.run(work)

    async def alert_sent(self, case_id: int, message_id: int) -> None:
        """Remember the doctors' group message that shows the case (the alert went out)."""

        def work(s: Session) -> None:
            esc = s.get(Escalation, case_id)
            if esc is not None:
                esc.alert_message_id = message_id
                esc.alert_error, esc.alert_failures, esc.alert_retry_at = None, 0, None
                s.add(esc)
                s.commit()

        await self.storage.run(work)

    async def alert_sending(self, case_id: int, until: datetime) -> None:
        """An alert's send begins: no other process sends it again before `until`."""

        def work(s: Session) -> None:
            esc = s.get(Escalation, case_id)
            if esc is not None:
                esc.alert_retry_at = until
                s.add(esc)
                s.commit()

        await self.storage.run(work)

    async def alert_failed(self, case_id: int, reason: str, retry_after: timedelta) -> int:
        """Record that the doctors' alert did not go out; return how many times in a row."""

        def work(s: Session) -> int:
            esc = s.get(Escalation, case_id)
            if esc is None:
                return 0
            esc.alert_failures += 1
            esc.alert_error = reason[:64]
            esc.alert_retry_at = utcnow() + retry_after * 2 ** min(esc.alert_failures - 1, 5)
            s.add(esc)
            s.add(
                audit_event(
                    "carebot",
                    "escalation.alert_failed",
                    "escalation",
                    str(case_id),
                    reason=esc.alert_error,
                    failures=esc.alert_failures,
                )
            )
            s.commit()
            return esc.alert_failures

        return await self.storage.run(work)

    async def alerts_to_retry(self, now: datetime) -> list[int]:
        """Open cases whose doctors' alert failed, or was never confirmed sent, and is due
        for another try."""

        def work(s: Session) -> list[int]:
            rows = s.exec(
                select(Escalation.id).where(
                    Escalation.status == CaseStatus.OPEN.value,
                    col(Escalation.alert_retry_at).is_not(None),
                    col(Escalation.alert_retry_at) <= now,
                )
            ).all()
            return [int(r) for r in rows if r is not None]

        return await self.storage.run(work)

    async def undelivered_alerts(self) -> tuple[int, str | None]:
        """How many open cases the doctors' group was not told about, and the last reason."""

        def work(s: Session) -> tuple[int, str | None]:
            rows = s.exec(
                select(Escalation.alert_error)
                .where(
                    col(Escalation.status).in_([CaseStatus.OPEN.value, CaseStatus.CLAIMED.value]),
                    col(Escalation.alert_error).is_not(None),
                )
                .order_by(col(Escalation.id).desc())
            ).all()
            return len(rows), (rows[0] if rows else None)

        return await self.storage.run(work)

    async def sent_to_doctors(
        self,
        case_id: int,
        chat_id: int,
        sent: Sequence[HasMessageId],
        kind: str,
        shows_text: bool = True,
    ) -> None:
        """Remember the bot's messages about a case in a doctors' chat (to blank them when the
        patient is erased)."""

        def work(s: Session) -> None:
            for message in sent:
                s.add(
                    DoctorChatMessage(
                        case_id=case_id, chat_id=chat_id, message_id=message.message_id, kind=kind
                    )
                )
            if shows_text:
                s.add(_shown_in_telegram(case_id, chat_id, kind))
            s.commit()

        await self.storage.run(work)

    async def shown_to_doctors(self, case_id: int, chat_id: int, kind: str) -> None:
        """Record that a doctors' chat was shown the case's text again (an alert edited)."""

        def work(s: Session) -> None:
            s.add(_shown_in_telegram(case_id, chat_id, kind))
            s.commit()

        await self.storage.run(work)

    async def alert_message(self, case_id: int) -> int | None:
        """The doctors' group message that announced the case."""

        def work(s: Session) -> int | None:
            esc = s.get(Escalation, case_id)
            return esc.alert_message_id if esc is not None else None

        return await self.storage.run(work)

    async def case_of_alert(self, alert_message_id: int) -> int | None:
        """The case a doctors' group message announced (for replies to the alert)."""

        def work(s: Session) -> int | None:
            esc = s.exec(
                select(Escalation).where(Escalation.alert_message_id == alert_message_id)
            ).first()
            return esc.id if esc is not None else None

        return await self.storage.run(work)

    async def held_by(self, staff_id: int) -> list[int]:
        """The cases a staff account has claimed and not yet closed, oldest claim first."""

        def work(s: Session) -> list[int]:
            rows = s.exec(
                select(Escalation.id)
                .where(
                    Escalation.status == CaseStatus.CLAIMED.value,
                    Escalation.claimed_by_staff_id == staff_id,
                )
                .order_by(col(Escalation.claimed_at))
            ).all()
            return [int(r) for r in rows if r is not None]

        return await self.storage.run(work)

    async def set_summary(self, case_id: int, summary: str, source: str) -> None:
        """Store the case summary."""

        def work(s: Session) -> None:
            esc = s.get(Escalation, case_id)
            if esc is not None:
                esc.summary, esc.summary_source = summary, source
                s.add(esc)
                s.commit()

        await self.storage.run(work)

    async def record_doctor_message(self, case_id: int, actor: Actor, text: str) -> int | None:
        """Keep a doctor's message in the patient's conversation; return its id."""

        def work(s: Session) -> int | None:
            esc = s.get(Escalation, case_id)
            if esc is None:
                return None
            row = Message(
                conversation_id=esc.conversation_id,
                direction="out",
                channel_message_id=f"doctor-{case_id}-{utcnow().timestamp()}",
                text=text,
                status="sent",
                kind="doctor",
                meta={"doctor": actor.name, "case": case_id},
            )
            s.add(row)
            s.commit()
            return row.id

        return await self.storage.run(work)

    async def language(self, case_id: int) -> str | None:
        """The language the case's patient was last answered in (or chose)."""

        def work(s: Session) -> str | None:
            esc = s.get(Escalation, case_id)
            conv = s.get(Conversation, esc.conversation_id) if esc else None
            patient = s.get(Patient, esc.patient_id) if esc else None
            kept = (conv.state or {}).get("language") if conv else None
            return str(kept) if kept else (patient.language if patient else None)

        return await self.storage.run(work)

    async def position(self, case_id: int) -> int:
        """1-based place of an open case in the queue (0 when not waiting)."""

        def work(s: Session) -> int:
            me = s.get(Escalation, case_id)
            if me is None or me.status != CaseStatus.OPEN.value:
                return 0
            mine = (-TriageLevel(me.level).rank, aware(me.created_at))
            rows = s.exec(
                select(Escalation.level, Escalation.created_at).where(
                    Escalation.status == CaseStatus.OPEN.value
                )
            ).all()
            return 1 + sum(1 for level, at in rows if (-TriageLevel(level).rank, aware(at)) < mine)

        return await self.storage.run(work)


def after(seconds: float, now: datetime | None = None) -> datetime:
    """A deadline `seconds` from now."""
    return (now or utcnow()) + timedelta(seconds=seconds)


def _shown_in_telegram(case_id: int, chat_id: int, kind: str) -> AuditEvent:
    # Everyone in that chat can read it: the chat is the reader on record.
    return audit_event(
        f"telegram-chat:{chat_id}", READ, READ_SUBJECT, str(case_id), via=f"telegram {kind}"
    )
