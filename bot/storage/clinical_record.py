"""The clinical record apart from the chat transcript: who decides what is erased, and when.

What a doctor saw and did is a medical record; the chat with the bot is not.
- **Clinical record**: every case (level, reasons, summary, outcome note, disposition, who
  claimed and closed it), the conversation its case page showed the doctor (from the close
  of the conversation's previous closed case to this case's close, or to now while it is
  active), the doctors' own messages, and the case's audit trail (reads, break-glass reasons,
  take-overs). It identifies the patient by pseudonym and channel account.
- **Chat transcript**: everything else the patient and the bot said, session memory, raw
  channel updates, and the bot's copies of alerts and relays in doctors' Telegram chats
  (copies: the record is in the database).

With CAREBOT_CLINICAL_RECORD_DAYS above 0 (the default), /forget and the retention job erase
the transcript and keep the record; the retention job erases the record that many days after
the patient's last case closed. /forget on a record files an erasure request, which an
administrator decides (`carebot records`): erase it, or keep it with a reason (a legal
retention duty). With 0 no record is kept apart: cases go with the chat, as for a service
that is not a provider's medical record.

A legal hold (`carebot records hold`) keeps everything of the patient's, transcript included,
whatever asks for erasure, until an administrator releases it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import and_, exists, or_
from sqlmodel import Session, col, delete, select, update

from bot.models import utcnow
from bot.storage.repository import Forgotten, audit_event, forget_patient_rows
from bot.storage.tables import (
    ChannelUpdate,
    Conversation,
    DoctorChatMessage,
    ErasureRequest,
    Escalation,
    LegalHold,
    Message,
    Patient,
)

ACTIVE_CASES = ("open", "claimed")


class RecordKept(Exception):
    """An erasure of a clinical record that may not happen now (hold, case still active)."""


def on_hold(s: Session, patient_id: int) -> bool:
    """Whether a legal hold is in force on the patient's data."""
    return (
        s.exec(
            select(LegalHold.id).where(
                LegalHold.patient_id == patient_id, col(LegalHold.released_at).is_(None)
            )
        ).first()
        is not None
    )


def record_message_ids(s: Session, conversation_ids: list[int]) -> set[int]:
    """The messages that belong to a case's record: what each case page showed its doctor
    (the same windows as bot/cases/store.py's detail)."""
    cases = s.exec(
        select(Escalation)
        .where(col(Escalation.conversation_id).in_(conversation_ids))
        .order_by(col(Escalation.id))
    ).all()
    last_close: dict[int, Any] = {}
    windows = []
    for esc in cases:
        after = last_close.get(esc.conversation_id)
        parts: list[Any] = [col(Message.conversation_id) == esc.conversation_id]
        if after is not None:
            parts.append(col(Message.created_at) > after)
        if esc.closed_at is not None:
            parts.append(col(Message.created_at) <= esc.closed_at)
            if after is None or esc.closed_at > after:
                last_close[esc.conversation_id] = esc.closed_at
        windows.append(and_(*parts))
    if not windows:
        return set()
    return {i for i in s.exec(select(Message.id).where(or_(*windows))).all() if i is not None}


def erase_patient(
    s: Session, channel: str, user_id: str, by: str = "patient", keep_record: bool = True
) -> Forgotten:
    """Erase what may go of one patient (`by`: "patient" for /forget, "retention").

    Under a legal hold, or with cases while records are kept, only the transcript goes (and a
    patient's own request to erase the rest is filed for review); otherwise everything.
    """
    patient = s.exec(
        select(Patient).where(Patient.channel == channel, Patient.channel_user_id == user_id)
    ).first()
    if patient is None or patient.id is None:
        return Forgotten()
    held = on_hold(s, patient.id)
    has_cases = s.exec(select(Escalation.id).where(Escalation.patient_id == patient.id)).first()
    if not held and not (keep_record and has_cases is not None):
        return forget_patient_rows(s, channel, user_id, by=by)
    erased = _erase_transcript(s, patient, by, held)
    if by == "patient":
        request = _file_request(s, patient)
        erased = replace(erased, request_id=request)
    s.commit()
    return erased


def _erase_transcript(s: Session, patient: Patient, by: str, held: bool) -> Forgotten:
    assert patient.id is not None
    conversations = s.exec(select(Conversation).where(Conversation.patient_id == patient.id)).all()
    conv_ids = [c.id for c in conversations if c.id is not None]
    chat_ids = [c.chat_id for c in conversations]
    cases = s.exec(select(Escalation).where(Escalation.patient_id == patient.id)).all()
    with_cases = {c.conversation_id for c in cases}

    def gone(statement: Any) -> int:
        return int(s.execute(statement).rowcount)  # type: ignore[attr-defined]

    messages = 0
    if not held:
        kept = record_message_ids(s, conv_ids)
        transcript = and_(col(Message.conversation_id).in_(conv_ids), col(Message.id).not_in(kept))
        # A kept message never points at an erased one; replies go before what they answer.
        s.execute(
            update(Message)
            .where(col(Message.id).in_(kept), col(Message.reply_to_id).not_in(kept))
            .values(reply_to_id=None)
        )
        messages = gone(delete(Message).where(transcript, col(Message.reply_to_id).is_not(None)))
        messages += gone(delete(Message).where(transcript))
    # Copies of closed cases in doctors' chats are blanked; an active case's alert still
    # serves the doctor working it.
    closed = [c.id for c in cases if c.status not in ACTIVE_CASES and c.id is not None]
    copies = s.exec(
        select(DoctorChatMessage).where(col(DoctorChatMessage.case_id).in_(closed))
    ).all()
    counts = {
        "messages": messages,
        "updates": gone(
            delete(ChannelUpdate).where(
                col(ChannelUpdate.channel) == patient.channel,
                col(ChannelUpdate.chat_id).in_(chat_ids),
            )
        ),
        "doctor_messages": gone(
            delete(DoctorChatMessage).where(col(DoctorChatMessage.case_id).in_(closed))
        ),
        "conversations": 0,
    }
    for conv in conversations:
        if held or conv.id in with_cases:
            conv.state = None  # the bot's working notes, not the record
            s.add(conv)
        else:
            s.delete(conv)
            counts["conversations"] += 1
    patient.transcript_erased_at = utcnow()
    s.add(patient)
    s.add(
        audit_event(
            by,
            "patient.transcript_erased",
            "patient",
            patient.pseudonym,
            held=held,
            cases_kept=len(cases),
            **counts,
        )
    )
    s.flush()
    keys = sorted({f"{patient.channel}:{chat_id}" for chat_id in chat_ids})
    return Forgotten(
        counts,
        [],
        [(m.chat_id, m.message_id) for m in copies],
        keys,
        record_kept=True,
    )


def _file_request(s: Session, patient: Patient) -> int:
    """The patient's request to erase their record: one pending request per patient."""
    assert patient.id is not None
    pending = s.exec(
        select(ErasureRequest).where(
            ErasureRequest.patient_id == patient.id, ErasureRequest.status == "pending"
        )
    ).first()
    if pending is not None and pending.id is not None:
        return pending.id
    request = ErasureRequest(patient_id=patient.id, pseudonym=patient.pseudonym)
    s.add(request)
    s.flush()
    assert request.id is not None
    s.add(
        audit_event(
            "patient",
            "erasure.requested",
            "erasure_request",
            str(request.id),
            pseudonym=patient.pseudonym,
        )
    )
    return request.id


# --- decisions (carebot records) ------------------------------------------------------------


def decide(s: Session, request_id: int, erase: bool, by: str, reason: str) -> ErasureRequest:
    """An administrator's decision on an erasure request: erase the record (refused under a
    hold or while a case is active) or keep it, with a reason either way."""
    request = s.get(ErasureRequest, request_id)
    if request is None:
        raise LookupError(f"no erasure request {request_id}")
    if request.status != "pending":
        raise RecordKept(f"erasure request {request_id} was decided already ({request.status})")
    patient = s.get(Patient, request.patient_id)
    if erase and patient is not None:
        if on_hold(s, request.patient_id):
            raise RecordKept("a legal hold is in force on this patient's data; release it first")
        if active_case(s, request.patient_id):
            raise RecordKept("a case of this patient is still open or claimed; close it first")
        forget_patient_rows(s, patient.channel, patient.channel_user_id, by=by)
    request.status = "erased" if erase else "kept"
    request.decided_by, request.decided_at, request.reason = by, utcnow(), reason
    s.add(request)
    s.add(
        audit_event(
            by, f"erasure.{request.status}", "erasure_request", str(request_id), reason=reason
        )
    )
    s.commit()
    return request


def active_case(s: Session, patient_id: int) -> bool:
    return (
        s.exec(
            select(Escalation.id).where(
                Escalation.patient_id == patient_id, col(Escalation.status).in_(ACTIVE_CASES)
            )
        ).first()
        is not None
    )


def hold(s: Session, pseudonym: str, by: str, reason: str) -> LegalHold:
    """Place a legal hold on a patient's data (one in force at a time)."""
    patient = _patient(s, pseudonym)
    assert patient.id is not None
    if on_hold(s, patient.id):
        raise RecordKept(f"{pseudonym} is on hold already")
    row = LegalHold(patient_id=patient.id, reason=reason, placed_by=by)
    s.add(row)
    s.add(audit_event(by, "legal_hold.placed", "patient", pseudonym, reason=reason))
    s.commit()
    return row


def release(s: Session, pseudonym: str, by: str, reason: str) -> None:
    """End the legal hold on a patient's data."""
    patient = _patient(s, pseudonym)
    rows = s.exec(
        select(LegalHold).where(
            LegalHold.patient_id == patient.id, col(LegalHold.released_at).is_(None)
        )
    ).all()
    if not rows:
        raise RecordKept(f"{pseudonym} is not on hold")
    for row in rows:
        row.released_by, row.released_at = by, utcnow()
        s.add(row)
    s.add(audit_event(by, "legal_hold.released", "patient", pseudonym, reason=reason))
    s.commit()


def _patient(s: Session, pseudonym: str) -> Patient:
    patient = s.exec(select(Patient).where(Patient.pseudonym == pseudonym)).first()
    if patient is None or patient.id is None:
        raise LookupError(f"no patient {pseudonym}")
    return patient


def pending_requests(s: Session) -> list[dict[str, Any]]:
    """Erasure requests waiting for a decision, oldest first, with what decides them."""
    rows = s.exec(
        select(ErasureRequest)
        .where(ErasureRequest.status == "pending")
        .order_by(col(ErasureRequest.id))
    ).all()
    out = []
    for r in rows:
        cases = s.exec(select(Escalation).where(Escalation.patient_id == r.patient_id)).all()
        last = max((c.closed_at for c in cases if c.closed_at is not None), default=None)
        out.append(
            {
                "id": r.id,
                "pseudonym": r.pseudonym,
                "requested_at": r.requested_at,
                "cases": len(cases),
                "active": any(c.status in ACTIVE_CASES for c in cases),
                "last_closed_at": last,
                "held": on_hold(s, r.patient_id),
            }
        )
    return out


def holds(s: Session) -> list[tuple[str, LegalHold]]:
    """Legal holds in force, with the patient's pseudonym."""
    rows = s.exec(
        select(Patient.pseudonym, LegalHold)
        .join(LegalHold, col(LegalHold.patient_id) == col(Patient.id))
        .where(col(LegalHold.released_at).is_(None))
        .order_by(col(LegalHold.id))
    ).all()
    return [(p, h) for p, h in rows]


def held_clause() -> Any:
    """SQL: a hold is in force on the Patient row of the query."""
    return exists().where(
        col(LegalHold.patient_id) == col(Patient.id), col(LegalHold.released_at).is_(None)
    )
