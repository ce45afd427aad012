"""Many patients at once, and dependencies missing: nobody waits for ever, emergencies never wait.

Issue 14 measured the default deployment hanging for good when ten patients asked at once (the
embedded model held a lock across LangChain's default executor) and a 4,096-character message
stalling another chat's emergency. These run the real packaged SmolLM2 in its model process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from bot.config import load_settings
from bot.errors import LLMBusy, LLMUnavailable
from bot.llm.base import LLMBackend
from bot.llm.embedded import EmbeddedBackend
from bot.llm.factory import build_llm
from bot.models import TriageLevel
from rag.errors import IndexUnavailable
from tests.conftest import RuntimeFactory
from tests.fakes import patient_message
from tests.servers import free_port

QUESTION = [SystemMessage("Answer in one sentence."), HumanMessage("How do I treat a cold?")]
EMERGENCY = "my father collapsed and is not breathing"
GUIDELINE_QUESTIONS = [
    "how long does a cold usually last?",
    "what helps a sore throat?",
    "can I take paracetamol for a fever?",
    "how do I know if a cut needs stitches?",
    "what should I eat with diarrhoea?",
    "how much water should I drink when I have a fever?",
    "is it ok to exercise with a cold?",
    "what helps hay fever?",
    "how do I treat a minor burn?",
    "what can I do about indigestion?",
]


def embedded(**overrides: object) -> EmbeddedBackend:
    llm = build_llm(load_settings(**overrides))
    assert isinstance(llm, EmbeddedBackend)
    return llm


async def until(condition: Callable[[], bool]) -> None:
    # Polling: the gate's state has no event to wait on (and should not grow one for tests).
    async with asyncio.timeout(30):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def collect(llm: LLMBackend) -> str:
    return "".join([piece async for piece in llm.stream(QUESTION)])


async def test_ten_concurrent_streams_on_the_embedded_model_all_finish() -> None:
    llm = embedded(llm_max_tokens=16, llm_queue_limit=20)
    try:
        answers = await asyncio.wait_for(
            asyncio.gather(*(collect(llm) for _ in range(10))), timeout=240
        )
    finally:
        await llm.aclose()
    assert len(answers) == 10 and all(a.strip() for a in answers)


async def test_a_full_waiting_line_answers_busy_at_once_and_the_others_still_finish() -> None:
    llm = embedded(llm_max_tokens=16, llm_queue_limit=1)
    try:
        first = asyncio.create_task(collect(llm))
        await until(lambda: llm.gate.held)  # the first holds the model
        second = asyncio.create_task(collect(llm))
        await until(lambda: llm.gate.waiting == 1)  # the second waits in line
        started = time.perf_counter()
        with pytest.raises(LLMBusy):
            await collect(llm)
        assert time.perf_counter() - started < 1.0
        assert (await first).strip() and (await second).strip()
    finally:
        await llm.aclose()


async def test_a_wait_in_line_past_the_deadline_gives_up() -> None:
    llm = embedded(llm_queue_limit=4)
    llm.timeout_s = 0.3  # the deadline for the wait
    try:
        async with llm.gate.turn(30):  # another patient's answer holds the model
            started = time.perf_counter()
            with pytest.raises(LLMUnavailable):
                await collect(llm)
            assert time.perf_counter() - started < 2.0
    finally:
        await llm.aclose()


async def test_an_emergency_is_answered_in_under_2_s_while_ten_patients_wait_for_answers(
    make_runtime: RuntimeFactory,
) -> None:
    rt = await make_runtime(embedded(llm_max_tokens=48))
    answers = [
        asyncio.create_task(rt.engine.handle(patient_message(q, f"patient-{n}")))
        for n, q in enumerate(GUIDELINE_QUESTIONS)
    ]
    await asyncio.sleep(0.5)  # the answers are under way
    started = time.perf_counter()
    reply = await rt.engine.handle(patient_message(EMERGENCY, "someone-collapsed"))
    assert time.perf_counter() - started < 2.0
    assert reply.level is TriageLevel.EMERGENCY and "112" in reply.text
    done = await asyncio.wait_for(asyncio.gather(*answers), timeout=300)
    # Every patient gets an answer: the model's, or the passages quoted when the line was full.
    assert all(r.kind == "answer" and r.text.strip() for r in done)


async def test_a_4096_character_message_does_not_hold_up_another_chats_emergency(
    make_runtime: RuntimeFactory,
) -> None:
    rt = await make_runtime()

    async def emergency_s(chat: str) -> float:
        started = time.perf_counter()
        reply = await rt.engine.handle(patient_message(EMERGENCY, chat))
        assert reply.level is TriageLevel.EMERGENCY
        return time.perf_counter() - started

    alone = await emergency_s("first-emergency")  # also warms what a first message loads
    long_word = "a" * 4096
    prose = ("I have been coughing and my knee hurts a little after running. " * 70)[:4096]
    slow = [
        asyncio.create_task(rt.engine.handle(patient_message(text, f"long-{n}")))
        for n, text in enumerate([long_word, prose, long_word, prose])
    ]
    await asyncio.sleep(0)
    meanwhile = await emergency_s("second-emergency")
    assert meanwhile - alone < 1.0  # the delay the long messages cause
    await asyncio.gather(*slow)


async def test_a_chroma_server_down_at_start_up_leaves_carebot_serving_degraded(
    make_runtime: RuntimeFactory,
) -> None:
    # Nothing listens on this port: the guideline index cannot be reached at start-up.
    rt = await make_runtime(chroma_url=f"http://127.0.0.1:{free_port()}")
    emergency = await rt.engine.handle(patient_message(EMERGENCY, "collapsed"))
    assert emergency.level is TriageLevel.EMERGENCY and "112" in emergency.text
    answer = await rt.engine.handle(patient_message("what helps a sore throat?", "throat"))
    assert answer.text.strip() and not answer.citations  # says so, invents nothing
    with pytest.raises(IndexUnavailable):
        rt.engine.answerer.retriever.index.count()
