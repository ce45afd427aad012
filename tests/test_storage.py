"""Persistent data: migrations, idempotent storage, consent, escalations, audit."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import Session, SQLModel, select

from bot.models import IncomingMessage, Reply, TriageLevel
from bot.storage.migrate import upgrade
from bot.storage.repository import Storage, make_engine
from bot.storage.tables import AuditEvent, Escalation, Message, Patient


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    engine = make_engine(f"sqlite:///{tmp_path / 'db' / 'carebot.db'}")
    upgrade(engine)
    return Storage(engine)


def msg(message_id: str = "1", text: str = "hello", user: str = "u1") -> IncomingMessage:
    return IncomingMessage(
        channel="test", chat_id=f"chat-{user}", user_id=user, message_id=message_id, text=text
    )


def test_migrations_match_the_models(storage: Storage) -> None:
    with storage.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_upgrade_twice_is_harmless(storage: Storage) -> None:
    upgrade(storage.engine)


async def test_incoming_message_is_stored_once(storage: Storage) -> None:
    first = await storage.record_incoming(msg("m1", "I have a cough"))
    again = await storage.record_incoming(msg("m1", "I have a cough"))
    assert not first.duplicate and again.duplicate
    assert again.message_id == first.message_id
    with Session(storage.engine) as s:
        rows = s.exec(select(Message)).all()
    assert [(r.direction, r.text, r.status) for r in rows] == [("in", "I have a cough", "received")]


async def test_reply_is_linked_and_returned_for_a_repeat(storage: Storage) -> None:
    stored = await storage.record_incoming(msg("m1"))
    await storage.record_reply(
        stored, Reply(text="the answer", kind="answer", level=TriageLevel.ROUTINE), {"k": 1}
    )
    again = await storage.record_incoming(msg("m1"))
    assert again.previous_reply == "the answer"
    with Session(storage.engine) as s:
        incoming = s.get(Message, stored.message_id)
    assert incoming is not None and incoming.status == "answered"


async def test_patients_are_pseudonymous_and_separate(storage: Storage) -> None:
    a = await storage.record_incoming(msg("1", user="alice"))
    b = await storage.record_incoming(msg("1", user="bob"))
    assert a.patient_id != b.patient_id and a.pseudonym != b.pseudonym
    assert "alice" not in a.pseudonym


async def test_consent_is_persisted_and_audited(storage: Storage) -> None:
    stored = await storage.record_incoming(msg("1"))
    assert not stored.consented
    await storage.record_consent(stored.patient_id)
    assert (await storage.record_incoming(msg("2"))).consented
    with Session(storage.engine) as s:
        events = s.exec(select(AuditEvent)).all()
        patient = s.get(Patient, stored.patient_id)
    assert [e.action for e in events] == ["consent.given"]
    assert patient is not None and patient.consent_at is not None


async def test_one_open_escalation_per_conversation_raised_not_lowered(storage: Storage) -> None:
    stored = await storage.record_incoming(msg("1"))
    first = await storage.open_escalation(stored, TriageLevel.URGENT, ["R1"], "triage")
    second = await storage.open_escalation(stored, TriageLevel.EMERGENCY, ["R2"], "triage")
    third = await storage.open_escalation(stored, TriageLevel.URGENT, ["R3"], "triage")
    assert first == second == third
    with Session(storage.engine) as s:
        esc = s.get(Escalation, first)
        actions = [e.action for e in s.exec(select(AuditEvent)).all()]
    assert esc is not None and esc.level == "emergency" and esc.status == "open"
    assert actions == ["escalation.opened", "escalation.raised"]


async def test_recent_turns_rebuild_history(storage: Storage) -> None:
    stored = await storage.record_incoming(msg("1", "first"))
    await storage.record_reply(stored, Reply(text="reply", kind="answer"), {})
    await storage.record_incoming(msg("2", "second"))
    turns = await storage.recent_turns(stored.conversation_id, 10)
    assert [(t.role, t.text) for t in turns] == [
        ("patient", "first"),
        ("bot", "reply"),
        ("patient", "second"),
    ]


async def test_hostile_text_is_stored_verbatim(storage: Storage) -> None:
    text = "'); DROP TABLE messages; -- 胸口痛 🤒 \u202eטקסט " + "z" * 100_000
    stored = await storage.record_incoming(msg("1", text))
    with Session(storage.engine) as s:
        row = s.get(Message, stored.message_id)
    assert row is not None and row.text == text
