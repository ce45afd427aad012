"""Persistent data: migrations, idempotent storage, consent, escalations, audit."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, select

from bot.models import IncomingMessage, Reply, TriageLevel
from bot.storage.migrate import alembic_config, upgrade
from bot.storage.repository import Storage, make_engine
from bot.storage.tables import AuditEvent, Escalation, Message, Patient


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


def test_every_migration_runs_down_and_up_again(storage: Storage) -> None:
    config = alembic_config(storage.engine)
    command.downgrade(config, "base")
    with storage.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)  # all gone
    command.upgrade(config, "head")
    with storage.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []


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


async def test_ids_are_never_reused_after_a_patient_is_forgotten(storage: Storage) -> None:
    async def open_one(user: str) -> int:
        stored = await storage.record_incoming(msg("m1", "chest pain", user=user))
        return await storage.open_escalation(stored, TriageLevel.URGENT, ["r"], "triage")

    first = await open_one("u1")
    await storage.forget_patient("test", "u1")  # the newest case, patient and messages go
    second = await open_one("u2")
    assert second > first  # SQLite would have handed out `first` again
    with Session(storage.engine) as s:
        audit = s.exec(select(AuditEvent).where(AuditEvent.subject_id == str(second))).all()
    assert [e.action for e in audit] == ["escalation.opened"]  # not the forgotten one's trail


def test_upgrading_a_database_with_data_keeps_it_and_its_references(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(alembic_config(engine), "0006")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO patients (id, pseudonym, channel, channel_user_id, created_at) "
            "VALUES (7, 'p7', 'test', 'u7', '2026-11-30 10:00:00')"
        )
        conn.exec_driver_sql(
            "INSERT INTO conversations (id, patient_id, channel, chat_id, started_at, "
            "last_message_at) VALUES (3, 7, 'test', 'c7', '2026-11-30 10:00:00', "
            "'2026-11-30 10:00:00')"
        )
        conn.exec_driver_sql(
            "INSERT INTO messages (id, conversation_id, direction, channel_message_id, text, "
            "status, meta, created_at) VALUES (9, 3, 'in', 'm', '胸口痛', 'received', '{}', "
            "'2026-11-30 10:00:00')"
        )
    upgrade(engine)
    with engine.connect() as conn:
        tables = conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
            "'alembic%' AND name NOT LIKE 'sqlite%'"
        ).fetchall()
        # Every table with an id never reuses one; chat leases are keyed by the chat itself.
        with_ids = [(name, sql) for name, sql in tables if "\tid INTEGER" in sql]
        assert {name for name, _ in tables} - {name for name, _ in with_ids} == {"chat_leases"}
        assert all("AUTOINCREMENT" in sql for _, sql in with_ids), with_ids
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        row = conn.exec_driver_sql("SELECT conversation_id, text FROM messages").one()
    assert tuple(row) == (3, "胸口痛")
    with Session(engine) as s, pytest.raises(IntegrityError):  # references still enforced
        s.add(Message(conversation_id=999, direction="in", channel_message_id="x", text="t"))
        s.commit()


async def test_the_message_right_after_an_erasure_is_stored(storage: Storage) -> None:
    # The WAL checkpoint after an erasure answers with a row; left unread, its statement
    # stayed open on the pooled connection and the next commit failed now and then.
    for i in range(8):
        stored = await storage.record_incoming(msg(f"a{i}", "chest pain", user=f"gone{i}"))
        await storage.open_escalation(stored, TriageLevel.URGENT, ["r"], "triage")
        await storage.forget_patient("test", f"gone{i}")
        kept = await storage.record_incoming(msg(f"b{i}", "still here", user=f"next{i}"))
        assert kept.message_id > 0


def test_workers_migrating_a_new_database_at_once_take_turns(database_url: str) -> None:
    # `carebot serve --workers 4` on a fresh database: every worker migrates at start-up.
    engines = [make_engine(database_url) for _ in range(4)]
    errors: list[BaseException] = []

    def migrate(engine: Engine) -> None:
        try:
            upgrade(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    with Session(engines[0]) as s:
        assert s.exec(select(Patient)).all() == []  # the schema is whole
    for engine in engines:
        engine.dispose()
