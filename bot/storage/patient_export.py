"""A patient's copy of their data (`/mydata` on Telegram, a download in the web chat).

Everything CareBot stores about the patient, readable and in FHIR R4's shapes where they
fit: a `Bundle` (type "collection") holding the `Patient` (their pseudonym, the channel
account, language, when they consented), one `Communication` per message in either
direction (the patient's, CareBot's, a doctor's, with the triage level of CareBot's
replies), and one `Encounter` per case handed to doctors (level, status, times, the triage
rules that opened it, the doctor's disposition and outcome note). Each export is audited
("patient.data_exported": how many messages and cases, never their content).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bot.cases.store import aware
from bot.models import utcnow
from bot.storage.repository import audit_event
from bot.storage.tables import Conversation, Escalation, Message, Patient

ENCOUNTER_STATUS = {
    "open": "planned",
    "claimed": "in-progress",
    "resolved": "finished",
    "expired": "cancelled",
}


def _when(at: datetime | None) -> str | None:
    moment = aware(at)
    return moment.isoformat() if moment is not None else None


def export_patient(s: Session, channel: str, user_id: str) -> dict[str, Any] | None:
    """The patient's data as a FHIR-shaped Bundle, or None when nothing is stored."""
    patient = s.exec(
        select(Patient).where(Patient.channel == channel, Patient.channel_user_id == user_id)
    ).first()
    if patient is None or patient.id is None:
        return None
    ref = f"Patient/{patient.pseudonym}"
    conversations = s.exec(select(Conversation).where(Conversation.patient_id == patient.id)).all()
    ids = [c.id for c in conversations if c.id is not None]
    messages = s.exec(
        select(Message).where(col(Message.conversation_id).in_(ids)).order_by(col(Message.id))
    ).all()
    cases = s.exec(
        select(Escalation).where(Escalation.patient_id == patient.id).order_by(col(Escalation.id))
    ).all()
    entries: list[dict[str, Any]] = [
        {
            "resource": {
                "resourceType": "Patient",
                "id": patient.pseudonym,
                "identifier": [
                    {"system": "urn:carebot:pseudonym", "value": patient.pseudonym},
                    {"system": f"urn:carebot:{patient.channel}", "value": patient.channel_user_id},
                ],
                "communication": [{"language": {"text": patient.language or "unknown"}}],
                "extension": [
                    {"url": "urn:carebot:consent-given", "valueDateTime": _when(patient.consent_at)}
                ],
            }
        }
    ]
    for m in messages:
        if m.direction == "in":
            sender = {"reference": ref}
        elif m.kind == "doctor":
            sender = {"display": str(m.meta.get("doctor") or "a doctor")}
        else:
            sender = {"display": "CareBot"}
        resource: dict[str, Any] = {
            "resourceType": "Communication",
            "id": f"message-{m.id}",
            "status": "completed",
            "subject": {"reference": ref},
            "sender": sender,
            "sent": _when(m.created_at),
            "payload": [{"contentString": m.text}],
        }
        if m.triage_level:
            resource["priority"] = m.triage_level
        entries.append({"resource": resource})
    for case in cases:
        encounter: dict[str, Any] = {
            "resourceType": "Encounter",
            "id": f"case-{case.id}",
            "status": ENCOUNTER_STATUS.get(case.status, case.status),
            "subject": {"reference": ref},
            "priority": {"text": case.level},
            "period": {"start": _when(case.created_at), "end": _when(case.closed_at)},
            "reasonCode": [
                {"coding": [{"system": "urn:carebot:triage-rule", "code": r}]} for r in case.reasons
            ],
        }
        if case.claimed_by:
            encounter["participant"] = [{"individual": {"display": case.claimed_by}}]
        if case.disposition or case.outcome:
            encounter["hospitalization"] = {
                "dischargeDisposition": {"text": case.disposition or ""},
            }
            encounter["extension"] = [
                {"url": "urn:carebot:outcome-note", "valueString": case.outcome or ""}
            ]
        entries.append({"resource": encounter})
    s.add(
        audit_event(
            "patient",
            "patient.data_exported",
            "patient",
            patient.pseudonym,
            messages=len(messages),
            cases=len(cases),
        )
    )
    s.commit()
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": utcnow().isoformat(),
        "entry": entries,
    }
