"""The clinical record apart from the chat transcript: /forget and retention erase the chat and
keep what a doctor saw, wrote and decided; the patient's request to erase the record is filed
and decided by an administrator; a legal hold keeps everything."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from bot.cases.models import Actor, CaseStatus
from bot.cases.store import CaseStore
from bot.cli import app
from bot.config import load_settings
from bot.dashboard.accounts import StaffAccounts
from bot.dashboard.roles import Role
from bot.models import IncomingMessage, Reply, TriageLevel
from bot.storage.clinical_record import RecordKept, decide, hold, release
from bot.storage.migrate import upgrade
from bot.storage.repository import Storage, audit_event, make_engine
from bot.storage.retention import Retention
from bot.storage.tables import (
    AuditEvent,
    Conversation,
    DoctorChatMessage,
    ErasureRequest,
    Escalation,
    Message,
    Patient,
)
from tests.conftest import RuntimeFactory

PASSWORD = "correct horse battery staple 42"  # pragma: allowlist secret
LONG_AGO = timedelta(days=400)


def said(user: str, n: int, text: str) -> IncomingMessage:
    return IncomingMessage(
        channel="telegram", chat_id=user, user_id=user, message_id=f"{user}-{n}", text=text
    )


async def treated_patient(storage: Storage, user: str, close: bool = True) -> int:
    """A patient whose chest pain became a case a doctor answered (and closed, with `close`),
    who then chatted on about something else. Returns the case id."""
    first = await storage.record_incoming(said(user, 1, "crushing chest pain, Mrs Quill's son"))
    await storage.record_reply(first, Reply(text="Call 112 now.", kind="emergency"), {})
    case_id = await storage.open_escalation(first, TriageLevel.EMERGENCY, ["chest"], "triage")
    store = CaseStore(storage)
    doctor = Actor(name="Dr Ada", staff_id=1)
    await store.claim(case_id, doctor)
    await store.record_doctor_message(case_id, doctor, "Please go to the emergency room now.")
    await storage.run(
        lambda s: (
            s.add(
                audit_event(
                    "staff:2", "case.break_glass", "escalation", str(case_id), reason="covering Ada"
                )
            ),
            s.add(DoctorChatMessage(case_id=case_id, chat_id=-100, message_id=7, kind="alert")),
            s.commit(),
        )
    )
    if close:
        await store.close(case_id, CaseStatus.RESOLVED, "staff:1", "sent to ED; ECG normal")
        later = await storage.record_incoming(said(user, 2, "thanks! also a rash, Zebedee"))
        await storage.record_reply(later, Reply(text="About the rash...", kind="answer"), {})
    return case_id


def rows(storage: Storage, table: Any) -> list[Any]:
    with Session(storage.engine) as s:
        return list(s.exec(select(table)).all())


async def test_forget_erases_the_chat_and_keeps_the_record_and_files_a_request(
    storage: Storage, tmp_path: Path
) -> None:
    case_id = await treated_patient(storage, "701")
    erased = await storage.forget_patient("telegram", "701")

    assert erased.record_kept and erased.request_id is not None
    texts = [m.text for m in rows(storage, Message)]
    # What the doctor saw, wrote and decided stays; what came after the case went.
    assert any("Quill" in t for t in texts) and "Please go to the emergency room now." in texts
    assert not any("Zebedee" in t or "About the rash" in t for t in texts)
    (case,) = rows(storage, Escalation)
    assert case.id == case_id and case.outcome == "sent to ED; ECG normal"
    trail = {e.action: e.details for e in rows(storage, AuditEvent) if e.subject_id == str(case_id)}
    assert trail["case.break_glass"] == {"reason": "covering Ada"}  # not redacted
    # The copy in the doctors' group is blanked (the record is in the database).
    assert erased.doctor_messages == [(-100, 7)] and erased.case_ids == []
    assert rows(storage, DoctorChatMessage) == []
    (conv,) = rows(storage, Conversation)
    assert conv.state is None
    (request,) = rows(storage, ErasureRequest)
    assert request.status == "pending" and request.pseudonym == rows(storage, Patient)[0].pseudonym
    if storage.engine.dialect.name == "sqlite":  # no copy in free pages or the WAL either
        files = list((tmp_path / "db").glob("carebot.db*"))
        assert files and all(b"Zebedee" not in f.read_bytes() for f in files)

    again = await storage.forget_patient("telegram", "701")  # a second /forget: one request
    assert again.request_id == request.id and len(rows(storage, ErasureRequest)) == 1


async def test_without_cases_or_with_records_off_everything_goes(storage: Storage) -> None:
    await storage.record_incoming(said("702", 1, "a question about a rash"))
    erased = await storage.forget_patient("telegram", "702")
    assert not erased.record_kept and erased.counts["messages"] == 1
    await treated_patient(storage, "703")
    erased = await storage.forget_patient("telegram", "703", keep_record=False)
    assert not erased.record_kept and erased.case_ids
    assert rows(storage, Patient) == [] and rows(storage, Escalation) == []
    assert rows(storage, ErasureRequest) == []


async def test_an_administrator_decides_and_the_decision_is_audited(storage: Storage) -> None:
    await treated_patient(storage, "704")
    first = await storage.forget_patient("telegram", "704")
    assert first.request_id is not None
    kept = await storage.run(
        lambda s: decide(s, first.request_id, False, "staff:9", "10-year duty")
    )
    assert kept.status == "kept" and len(rows(storage, Escalation)) == 1
    with pytest.raises(RecordKept):  # decided once
        await storage.run(lambda s: decide(s, first.request_id, True, "staff:9", "changed mind"))

    await treated_patient(storage, "705")
    second = await storage.forget_patient("telegram", "705")
    assert second.request_id is not None
    await storage.run(lambda s: decide(s, second.request_id, True, "staff:9", "no duty applies"))
    left = {p.channel_user_id for p in rows(storage, Patient)}
    assert left == {"704"}
    assert not any("Quill" in m.text for m in rows(storage, Message) if m.conversation_id != 1)
    actions = [(e.actor, e.action, e.details.get("reason")) for e in rows(storage, AuditEvent)]
    assert ("staff:9", "erasure.kept", "10-year duty") in actions
    assert ("staff:9", "erasure.erased", "no duty applies") in actions


async def test_an_active_case_or_a_hold_refuses_erasure(storage: Storage) -> None:
    await treated_patient(storage, "706", close=False)
    erased = await storage.forget_patient("telegram", "706")
    # The open case stays in the queue with its alert: the doctor is still working it.
    assert erased.doctor_messages == [] and rows(storage, DoctorChatMessage)
    assert erased.request_id is not None
    with pytest.raises(RecordKept, match="still open"):
        await storage.run(lambda s: decide(s, erased.request_id, True, "staff:9", "asked"))

    await treated_patient(storage, "707")
    pseudonym = next(p.pseudonym for p in rows(storage, Patient) if p.channel_user_id == "707")
    await storage.run(lambda s: hold(s, pseudonym, "staff:9", "complaint under review"))
    held = await storage.forget_patient("telegram", "707")
    # Under a hold even the chat stays; the request is still filed.
    assert held.request_id is not None and held.counts["messages"] == 0
    assert any("Zebedee" in m.text for m in rows(storage, Message))
    with pytest.raises(RecordKept, match="legal hold"):
        await storage.run(lambda s: decide(s, held.request_id, True, "staff:9", "asked"))
    await storage.run(lambda s: release(s, pseudonym, "staff:9", "review closed"))
    await storage.run(lambda s: decide(s, held.request_id, True, "staff:9", "asked"))
    assert "707" not in {p.channel_user_id for p in rows(storage, Patient)}


def age_all(storage: Storage, by: timedelta) -> None:
    """Everything stored happened `by` earlier."""
    with Session(storage.engine) as s:
        for table, columns in (
            (Patient, ("created_at", "transcript_erased_at")),
            (Conversation, ("last_message_at",)),
            (Message, ("created_at",)),
            (Escalation, ("created_at", "claimed_at", "closed_at")),
            (AuditEvent, ("at",)),
        ):
            for row in s.exec(select(table)):
                for column in columns:
                    if getattr(row, column, None) is not None:
                        setattr(row, column, getattr(row, column) - by)
                s.add(row)
        s.commit()


async def test_retention_erases_the_chat_then_the_record_after_its_own_period(
    storage: Storage,
) -> None:
    case_id = await treated_patient(storage, "708")
    age_all(storage, LONG_AGO)
    retention = Retention(storage, days=365, record_days=3650)
    report = await retention.purge()
    assert report.patients == 1 and report.records == 0
    assert not any("Zebedee" in m.text for m in rows(storage, Message))
    assert any("Quill" in m.text for m in rows(storage, Message))
    # Old audit details go, except a kept case's trail (its reads and break-glass reasons).
    trail = [e for e in rows(storage, AuditEvent) if e.subject_id == str(case_id)]
    assert any(e.details.get("reason") == "covering Ada" for e in trail)
    assert rows(storage, ErasureRequest) == []  # retention asks nobody
    assert not (await retention.purge()).anything  # nothing twice

    age_all(storage, timedelta(days=3300))  # the case closed 3,700 days ago
    report = await retention.purge()
    assert report.records == 1 and rows(storage, Patient) == [] and rows(storage, Message) == []


async def test_a_patient_who_writes_again_keeps_their_new_chat_until_it_goes_silent(
    storage: Storage,
) -> None:
    await treated_patient(storage, "709")
    await storage.forget_patient("telegram", "709")
    age_all(storage, timedelta(days=5000))  # past both periods...
    await storage.record_incoming(said("709", 3, "back again, Yolanda's cough"))  # ...but new
    report = await Retention(storage, days=365, record_days=3650).purge()
    assert report.patients == 0 and report.records == 0
    assert any("Yolanda" in m.text for m in rows(storage, Message))


def test_records_command_line(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("CAREBOT_DATA_DIR", str(tmp_path / "data"))
    storage = Storage(make_engine(load_settings().sqlalchemy_url))
    upgrade(storage.engine)
    accounts = StaffAccounts(storage)
    asyncio.run(accounts.add("root", "Ada Admin", Role.ADMIN, PASSWORD))
    asyncio.run(accounts.add("lee", "Dr Lee", Role.DOCTOR, PASSWORD))
    asyncio.run(treated_patient(storage, "710"))
    request = asyncio.run(storage.forget_patient("telegram", "710")).request_id
    pseudonym = rows(storage, Patient)[0].pseudonym
    runner = CliRunner()

    def signed(*args: str, by: str) -> Any:
        return runner.invoke(
            app, ["records", *args, "--by", by, "--password-stdin"], input=PASSWORD + "\n"
        )

    listed = runner.invoke(app, ["records", "requests"])
    assert listed.exit_code == 0 and pseudonym in listed.output and "cases 1" in listed.output
    doctor = signed("erase", str(request), "--reason", "asked", by="lee")
    assert doctor.exit_code == 1 and "only administrators" in doctor.output
    wrong = runner.invoke(
        app,
        ["records", "erase", str(request), "--reason", "x", "--by", "root", "--password-stdin"],
        input="not the password\n",
    )
    assert wrong.exit_code == 1 and "not signed in" in wrong.output
    held = signed("hold", pseudonym, "--reason", "complaint", by="root")
    assert held.exit_code == 0 and pseudonym in runner.invoke(app, ["records", "holds"]).output
    refused = signed("erase", str(request), "--reason", "asked", by="root")
    assert refused.exit_code == 1 and "legal hold" in refused.output
    assert signed("release", pseudonym, "--reason", "closed", by="root").exit_code == 0
    done = signed("erase", str(request), "--reason", "no duty applies", by="root")
    assert done.exit_code == 0 and "erased" in done.output, done.output
    assert rows(storage, Patient) == []
    assert "no erasure requests" in runner.invoke(app, ["records", "requests"]).output
    events = [(e.actor, e.action) for e in rows(storage, AuditEvent)]
    admin = asyncio.run(accounts.named("root")).label
    assert (admin, "erasure.erased") in events and (admin, "legal_hold.placed") in events
    storage.engine.dispose()


async def test_telegram_forget_tells_the_patient_what_was_kept(
    make_runtime: RuntimeFactory,
) -> None:
    rt = await make_runtime()
    msg = IncomingMessage(
        channel="telegram",
        chat_id="711",
        user_id="711",
        message_id="1",
        text="crushing chest pain and sweating",
        consent=True,
    )
    await rt.engine.handle(msg)
    assert rows(rt.storage, Escalation)
    reply = await rt.engine.forget(msg.model_copy(update={"message_id": "2", "text": "/forget"}))
    assert "medical record" in reply.text and "a staff member will decide" in reply.text
    assert "112" in reply.text
    assert json.dumps([m.text for m in rows(rt.storage, Message)]).count("crushing") == 1
