"""An emergency never waits for a slow turn: the database locked by another process, or the
same patient's previous question still with the model. The engine and database are real; the
lock is a real second SQLite connection; the model is slow on purpose.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlmodel import Session, select

from bot.llm.base import LLMBackend
from bot.models import Reply
from bot.storage.tables import Escalation, Message
from tests.conftest import RuntimeFactory
from tests.fakes import SlowChatModel, database_locked_for, patient_message

CHEST = "crushing chest pain and sweating for 20 minutes"
QUESTION = "How should I treat a mild fever at home?"
WAIT_S = 0.3  # CAREBOT_EARLY_WARNING_S in these tests


class Patient:
    """What reaches the patient: early warnings and the channel's final send, with times."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seen: list[tuple[float, str]] = []

    async def warn(self, reply: Reply) -> None:
        self.seen.append((time.perf_counter() - self.started, reply.text))

    def final(self, reply: Reply) -> None:
        if text := reply.unsent():  # what a channel sends after a warning
            self.seen.append((time.perf_counter() - self.started, text))


async def test_an_emergency_behind_a_locked_database_is_answered_at_once_and_once(
    make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    rt = await make_runtime(early_warning_s=WAIT_S)
    await rt.engine.handle(patient_message("hello", "earlier"))  # the database exists
    msg = patient_message(CHEST, "locked")
    patient = Patient()
    with database_locked_for(tmp_path / "data" / "carebot.db", 2.5):
        early = rt.engine.early_warning(msg, patient.warn, WAIT_S)
        reply = await rt.engine.handle(msg, early=early)
        patient.final(reply)
    first_at, first = patient.seen[0]
    assert first_at < 1.0 and "Call 112" in first
    assert sum("Call 112" in text for _, text in patient.seen) == 1, patient.seen
    # The turn ran when the lock went: the message and the instruction are stored, the case open.
    with Session(rt.storage.engine) as s:
        stored = s.exec(select(Message).where(Message.text == CHEST)).all()
        cases = s.exec(select(Escalation)).all()
    assert len(stored) == 1 and stored[0].status == "answered"
    assert len(cases) == 1 and cases[0].level == "emergency"
    assert reply.kind == "emergency" and "Call 112" in reply.text


async def test_an_emergency_behind_the_same_patients_slow_answer_is_not_held(
    make_runtime: RuntimeFactory,
) -> None:
    model = SlowChatModel(delay_s=4.0, seen=[])
    rt = await make_runtime(llm=LLMBackend(model), early_warning_s=WAIT_S)
    patient = Patient()
    chat = "same-patient"
    question = asyncio.create_task(rt.engine.handle(patient_message(QUESTION, chat)))
    await asyncio.sleep(0.5)  # the model is answering the first question
    msg = patient_message(CHEST, chat)
    reply = await rt.engine.handle(msg, early=rt.engine.early_warning(msg, patient.warn, WAIT_S))
    patient.final(reply)
    assert (await question).kind == "answer"
    warned_at, text = patient.seen[0]
    assert warned_at < 1.0 and "Call 112" in text
    assert sum("Call 112" in t for _, t in patient.seen) == 1, patient.seen
    with Session(rt.storage.engine) as s:
        assert len(s.exec(select(Escalation)).all()) == 1


async def test_a_fast_turn_sends_no_warning_and_a_slow_harmless_one_none_either(
    make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    rt = await make_runtime(early_warning_s=WAIT_S)
    patient = Patient()
    fast = patient_message(CHEST, "fast")
    reply = await rt.engine.handle(fast, early=rt.engine.early_warning(fast, patient.warn, WAIT_S))
    assert patient.seen == [] and "Call 112" in reply.unsent()
    await asyncio.sleep(WAIT_S * 2)  # a settled warning never fires later
    assert patient.seen == []
    harmless = patient_message(QUESTION, "slow")
    with database_locked_for(tmp_path / "data" / "carebot.db", 1.0):
        early = rt.engine.early_warning(harmless, patient.warn, WAIT_S)
        reply = await rt.engine.handle(harmless, early=early)
    assert patient.seen == [] and reply.kind == "answer"


async def test_a_warning_sent_before_the_database_gave_up_is_followed_only_by_the_note(
    make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    rt = await make_runtime(early_warning_s=WAIT_S)
    await rt.engine.handle(patient_message("hello", "earlier"))
    rt.storage.engine.dispose()
    msg = patient_message(CHEST, "never-saved")
    patient = Patient()
    with database_locked_for(tmp_path / "data" / "carebot.db", 6.0):  # past the 5 s wait
        reply = await rt.engine.handle(
            msg, early=rt.engine.early_warning(msg, patient.warn, WAIT_S)
        )
        patient.final(reply)
    texts = [t for _, t in patient.seen]
    assert len(texts) == 2 and "Call 112" in texts[0], texts
    assert "could not save this message" in texts[1] and "Call 112" not in texts[1]


async def test_a_chinese_emergency_is_warned_in_chinese_and_empty_text_never_warns(
    make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    rt = await make_runtime(early_warning_s=WAIT_S)
    await rt.engine.handle(patient_message("hello", "earlier"))
    patient = Patient()
    chinese = patient_message("我胸口压榨样疼痛，还出冷汗，已经二十分钟了", "zh-locked")
    empty = patient_message("   ", "empty-locked")
    with database_locked_for(tmp_path / "data" / "carebot.db", 2.0):
        warnings = [rt.engine.early_warning(m, patient.warn, WAIT_S) for m in (chinese, empty)]
        replies = await asyncio.gather(
            rt.engine.handle(chinese, early=warnings[0]), rt.engine.handle(empty, early=warnings[1])
        )
    assert len(patient.seen) == 1, patient.seen  # the empty message: nothing to read, no warning
    warned_at, text = patient.seen[0]
    assert warned_at < 1.0 and "112" in text and "急" in text
    assert replies[0].unsent().count("112") <= 1 and "112" not in replies[1].text
