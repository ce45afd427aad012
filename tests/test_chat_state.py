"""The database is the record of where a chat stands; session memory only caches its turns.

Losing the cache (a restart of the embedded store, redis-server killed or flushed, a turn
that never reached it) must change nothing a patient or doctor notices: warnings are not
repeated, a claimed case keeps relaying, a held question is still answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlmodel import Session, select

from bot.cases.events import CaseEvent
from bot.cases.models import Actor, ClaimOutcome
from bot.memory.inmemory import InMemorySessionStore
from bot.runtime import Runtime
from bot.storage.tables import Escalation
from tests.conftest import RuntimeFactory
from tests.fakes import patient_message, scripted
from tests.servers import RedisServer

GROUNDED = "Get urgent help today if your fever has lasted more than three days [1]."
FEVER = "I have had a mild fever since yesterday, what can I do?"
CHEST = "crushing chest pain and sweating for 20 minutes"
EMERGENCY_LINE = "Call 112"
LoseMemory = Callable[[Runtime], Awaitable[None]]


async def _fresh_embedded_store(rt: Runtime) -> None:
    """What a restart of the embedded store does: every cached turn gone."""
    settings = rt.settings
    rt.engine.sessions = InMemorySessionStore(settings.session_ttl_s, settings.history_turns)
    rt.cases.sessions = rt.engine.sessions


async def _flush_redis(rt: Runtime) -> None:
    assert rt.settings.redis_url is not None
    client = Redis.from_url(rt.settings.redis_url.get_secret_value())
    await client.flushall()
    await client.aclose()


@pytest.fixture(params=["embedded-restart", "redis-flushed", "redis-killed"])
async def memory_loss(
    request: pytest.FixtureRequest, make_runtime: RuntimeFactory, tmp_path: Path
) -> tuple[Runtime, LoseMemory]:
    """A runtime and a way to lose its session memory mid-conversation."""
    if request.param == "embedded-restart":
        return await make_runtime(scripted(GROUNDED)), _fresh_embedded_store
    server = RedisServer(tmp_path)
    request.addfinalizer(server.stop)
    rt = await make_runtime(scripted(GROUNDED), redis_url=server.url)
    if request.param == "redis-flushed":
        return rt, _flush_redis

    async def kill(_: Runtime) -> None:
        server.stop()

    return rt, kill


def _cases(rt: Runtime) -> list[Escalation]:
    with Session(rt.storage.engine) as s:
        return list(s.exec(select(Escalation)).all())


async def test_an_announced_emergency_is_not_announced_again_after_memory_is_lost(
    memory_loss: tuple[Runtime, LoseMemory],
) -> None:
    rt, lose = memory_loss
    first = await rt.engine.handle(patient_message(CHEST, "c1"))
    assert first.kind == "emergency" and EMERGENCY_LINE in first.text
    await lose(rt)
    second = await rt.engine.handle(patient_message(FEVER, "c1"))
    # Reminded in one line, not given the whole instruction (and a second case) again.
    assert second.kind == "answer" and second.text.startswith("⚠️ Reminder")
    assert len(_cases(rt)) == 1


async def test_a_claimed_case_keeps_relaying_to_its_doctor_after_memory_is_lost(
    memory_loss: tuple[Runtime, LoseMemory],
) -> None:
    rt, lose = memory_loss
    relayed: list[CaseEvent] = []

    async def on_event(event: CaseEvent) -> None:
        if event.kind == "patient":
            relayed.append(event)

    rt.cases.events.listen(on_event)
    await rt.engine.handle(patient_message(FEVER, "c2"))  # consents
    await rt.engine.request_doctor(patient_message("/doctor", "c2"))
    (case,) = _cases(rt)
    assert case.id is not None
    outcome, _ = await rt.cases.claim(case.id, Actor(name="Dr Ada", staff_id=1))
    assert outcome is ClaimOutcome.CLAIMED
    await lose(rt)
    reply = await rt.engine.handle(patient_message("my rash is spreading", "c2"))
    assert reply.kind == "relayed" and reply.text == ""
    assert [e.case_id for e in relayed] == [case.id]


async def test_a_claim_made_while_redis_is_down_takes_effect(
    make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path)
    try:
        rt = await make_runtime(scripted(GROUNDED), redis_url=server.url)
        await rt.engine.handle(patient_message(FEVER, "c3"))  # consents
        await rt.engine.request_doctor(patient_message("/doctor", "c3"))
        server.stop()
        (case,) = _cases(rt)
        assert case.id is not None
        await rt.cases.claim(case.id, Actor(name="Dr Ada", staff_id=1))
        reply = await rt.engine.handle(patient_message("thank you doctor", "c3"))
        assert reply.kind == "relayed"
        await rt.cases.resolve(case.id, Actor(name="Dr Ada", staff_id=1), "advised rest")
        back = await rt.engine.handle(patient_message(FEVER, "c3"))
        assert back.kind == "answer"  # the case is closed: CareBot answers again
    finally:
        server.stop()


async def test_a_question_held_for_consent_is_answered_after_memory_is_lost(
    memory_loss: tuple[Runtime, LoseMemory],
) -> None:
    rt, lose = memory_loss
    held = await rt.engine.handle(patient_message(FEVER, "c4", consent=False))
    assert held.kind == "consent"
    await lose(rt)
    answered = await rt.engine.handle(patient_message("yes", "c4", consent=False))
    assert answered.kind == "answer" and "[1]" in answered.text


async def test_a_new_runtime_on_the_same_database_remembers_the_warning(
    make_runtime: RuntimeFactory,
) -> None:
    rt = await make_runtime(scripted(GROUNDED))
    assert (await rt.engine.handle(patient_message(CHEST, "c5"))).kind == "emergency"
    await rt.aclose()
    rt2 = await make_runtime(scripted(GROUNDED))  # same data folder, fresh memory
    again = await rt2.engine.handle(patient_message(FEVER, "c5"))
    assert again.kind == "answer" and again.text.startswith("⚠️ Reminder")


async def test_a_cache_missing_recent_turns_is_rebuilt_from_the_database(
    make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path)
    try:
        rt = await make_runtime(scripted(GROUNDED), redis_url=server.url)
        await rt.engine.handle(patient_message("hello, I have a question", "c6"))
        await rt.engine.handle(patient_message("I have chest pain", "c6"))
        # The second exchange never reached the cache (as when Redis blinked during it).
        client = Redis.from_url(server.url)
        await client.rpop("carebot:session:test:c6:history", 2)
        await client.aclose()
        reply = await rt.engine.handle(patient_message("and now I am sweating a lot", "c6"))
        assert reply.kind == "emergency"  # chest pain came back from the database
    finally:
        server.stop()


async def test_a_long_silence_starts_a_new_episode(make_runtime: RuntimeFactory) -> None:
    rt = await make_runtime(scripted(GROUNDED), session_ttl_s=1)
    assert (await rt.engine.handle(patient_message(CHEST, "c7"))).kind == "emergency"
    with Session(rt.storage.engine) as s:  # the case is dealt with meanwhile
        for case in s.exec(select(Escalation)).all():
            case.status = "resolved"
            s.add(case)
        s.commit()
    await asyncio.sleep(1.3)
    # Past the memory window the same words are a new emergency, announced in full.
    assert (await rt.engine.handle(patient_message(CHEST, "c7"))).kind == "emergency"
