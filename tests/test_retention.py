"""Retention: patients silent past CAREBOT_RETENTION_DAYS are erased as by /forget (unless a
case is still open), older inbox rows and audit details go, and the pass tells the doctors'
side which bot messages to blank."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlmodel import Session, select

from bot.models import IncomingMessage, TriageLevel, utcnow
from bot.storage.repository import Forgotten, Storage, audit_event
from bot.storage.retention import Retention
from bot.storage.tables import (
    AuditEvent,
    ChannelUpdate,
    Conversation,
    DoctorChatMessage,
    Escalation,
    Message,
    Patient,
)
from tests.conftest import RuntimeFactory
from tests.servers import RedisServer

LONG_AGO = timedelta(days=400)


async def patient(storage: Storage, user: str, text: str, case: str | None = None) -> int:
    """A patient who wrote `text`; with `case`, a case in that status. Returns the patient id."""
    stored = await storage.record_incoming(
        IncomingMessage(
            channel="telegram", chat_id=user, user_id=user, message_id=f"{user}-1", text=text
        )
    )
    if case is not None:
        case_id = await storage.open_escalation(stored, TriageLevel.URGENT, ["r"], "triage")

        def close(s: Session) -> None:
            row = s.get(Escalation, case_id)
            assert row is not None
            row.status = case
            s.add(row)
            s.add(
                audit_event(
                    "staff:1", f"escalation.{case}", "escalation", str(case_id), outcome=text
                )
            )
            s.add(DoctorChatMessage(case_id=case_id, chat_id=-100, message_id=7, kind="alert"))
            s.commit()

        await storage.run(close)
    return stored.patient_id


def age(storage: Storage, patient_id: int, by: timedelta) -> None:
    """Make a patient and their conversations `by` older."""
    with Session(storage.engine) as s:
        row = s.get(Patient, patient_id)
        assert row is not None
        row.created_at -= by
        s.add(row)
        for conv in s.exec(select(Conversation).where(Conversation.patient_id == patient_id)):
            conv.last_message_at -= by
            s.add(conv)
        s.commit()


async def test_silent_patients_go_active_ones_and_open_cases_stay(storage: Storage) -> None:
    gone = await patient(storage, "101", "old question about a rash")
    closed = await patient(storage, "102", "old chest pain, Mrs Quill's son", case="resolved")
    waiting = await patient(storage, "103", "old but a doctor still has it", case="claimed")
    recent = await patient(storage, "104", "wrote yesterday")
    for pid in (gone, closed, waiting):
        age(storage, pid, LONG_AGO)
    age(storage, recent, timedelta(days=1))
    with Session(storage.engine) as s:
        s.add(ChannelUpdate(channel="telegram", update_id=1, received_at=utcnow() - LONG_AGO))
        s.add(ChannelUpdate(channel="telegram", update_id=2, payload={"kept": True}))
        s.add(
            AuditEvent(
                actor="staff:1",
                action="staff.login",
                subject_type="staff_user",
                subject_id="1",
                at=utcnow() - LONG_AGO,
                details={"client": "203.0.113.7"},
            )
        )
        s.commit()

    report = await Retention(storage, days=365, record_days=0).purge()

    assert report.patients == 2 and report.updates == 1
    with Session(storage.engine) as s:
        left = {p.channel_user_id for p in s.exec(select(Patient))}
        texts = [m.text for m in s.exec(select(Message))]
        login = s.exec(select(AuditEvent).where(AuditEvent.action == "staff.login")).one()
        closed_trail = s.exec(
            select(AuditEvent).where(AuditEvent.action == "escalation.resolved")
        ).one()
        purged = s.exec(select(AuditEvent).where(AuditEvent.action == "retention.purged")).one()
        updates = [u.update_id for u in s.exec(select(ChannelUpdate))]
    assert left == {"103", "104"}  # the claimed case's patient waits for their doctor
    assert not any("rash" in t or "Quill" in t for t in texts)
    assert login.details == {} and login.actor == "staff:1"  # who and when stay
    assert "Quill" not in str(closed_trail.details)
    assert purged.details["patients"] == 2 and updates == [2]
    # The doctors' side is told which of the bot's messages to blank.
    assert [f.doctor_messages for f in report.erased if f.doctor_messages] == [[(-100, 7)]]

    again = await Retention(storage, days=365, record_days=0).purge()
    assert not again.anything  # nothing twice


async def test_zero_days_keeps_everything(storage: Storage) -> None:
    pid = await patient(storage, "201", "keep me")
    age(storage, pid, timedelta(days=10_000))
    assert not (await Retention(storage, days=0, record_days=0).purge()).anything
    with Session(storage.engine) as s:
        assert len(s.exec(select(Patient)).all()) == 1


async def test_the_running_job_hands_erased_patients_on(storage: Storage) -> None:
    pid = await patient(storage, "301", "old", case="expired")
    age(storage, pid, LONG_AGO)
    handed: list[Forgotten] = []

    async def erased(one: Forgotten) -> None:
        handed.append(one)

    task = asyncio.create_task(Retention(storage, days=30, record_days=0).run(3600, erased))
    try:
        for _ in range(200):
            if handed:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
    assert len(handed) == 1 and handed[0].case_ids


async def test_forget_while_session_memory_is_down_is_honest_and_finished_later(
    make_runtime: RuntimeFactory, private_redis: RedisServer
) -> None:
    import os
    import signal

    from redis import Redis

    from bot.memory.erasure import MemoryErasure

    redis = private_redis
    try:
        rt = await make_runtime(redis_url=redis.url)
        msg = IncomingMessage(
            channel="telegram",
            chat_id="555",
            user_id="555",
            message_id="1",
            text="I have had a sore throat for two days",
            consent=True,
        )
        await rt.engine.handle(msg)
        probe = Redis.from_url(redis.url, decode_responses=True)
        assert any("telegram:555" in k for k in probe.keys("*"))  # the words are in Redis
        os.kill(redis.proc.pid, signal.SIGSTOP)  # Redis hangs: every call times out
        try:
            forget = msg.model_copy(update={"message_id": "2", "text": "/forget"})
            reply = await rt.engine.forget(forget)
            # Not "deleted" while a copy is still there: the patient is told the truth.
            assert "could not be reached just now" in reply.text
            eraser = MemoryErasure(rt.storage, rt.sessions)
            assert await eraser.pending() == ["telegram:555"]
            assert await eraser.retry() == 1  # still down: still pending (and recorded)
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        for _ in range(20):  # Redis is back: the next round (every minute) erases the copy
            if await eraser.retry() == 0:
                break
            await asyncio.sleep(0.2)
        assert not any("telegram:555" in k for k in probe.keys("*"))
        assert await eraser.pending() == []
        probe.close()
    finally:
        redis.stop()


async def test_the_retention_job_clears_session_memory_and_caches_too(
    make_runtime: RuntimeFactory, private_redis: RedisServer
) -> None:
    from redis import Redis

    redis = private_redis
    try:
        rt = await make_runtime(redis_url=redis.url, retention_days=30)
        msg = IncomingMessage(
            channel="telegram",
            chat_id="556",
            user_id="556",
            message_id="1",
            text="I have had a sore throat for two days",
            consent=True,
        )
        await rt.engine.handle(msg)
        probe = Redis.from_url(redis.url, decode_responses=True)
        assert any("telegram:556" in k for k in probe.keys("*"))
        later = Retention(rt.storage, 30, 0, clock=lambda: utcnow() + timedelta(days=31))
        report = await later.purge()
        assert report.patients == 1 and report.erased[0].chat_keys == ["telegram:556"]
        await rt.patient_erased(report.erased[0])  # what the retention task hands it to
        assert not any("telegram:556" in k for k in probe.keys("*"))
        probe.close()
    finally:
        redis.stop()
