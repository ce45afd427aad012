"""The fault campaign: a real `carebot serve` process, web and Telegram patients, a doctor
holding a case, and one fault at a time -- Redis killed and blocked, the database locked,
Chroma stopped, the LLM hung or trickling, Telegram refusing sends, and kill -9 mid-turn.

After each: every message stored, every emergency answered within 2 s of being sent (of the
process being back, for messages written while it was dead), no reply twice, and the
hand-off intact both ways (tests/faults/harness.py).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.bot_api import BotAPIServer
from tests.fakes import database_locked_for
from tests.faults.harness import (
    CHEST,
    DOCTORS,
    HANDED_OFF,
    QUESTION,
    STROKE,
    Campaign,
    WebPatient,
)
from tests.faults.llm_server import FaultyLLMServer
from tests.servers import RedisServer
from tests.test_index_contract import _start as start_chroma

Make = Callable[..., Campaign]
ANSWERED_S = 20.0  # a question's reply, whatever the fault (the LLM deadline is 3 s here)


@pytest.fixture
def llm() -> Iterator[FaultyLLMServer]:
    server = FaultyLLMServer()
    yield server
    server.stop()


@pytest.fixture
def make(tmp_path: Path, guideline_index_dir: Path, llm: FaultyLLMServer) -> Iterator[Make]:
    api = BotAPIServer()
    made: list[Campaign] = []

    def build(**env: str) -> Campaign:
        env.setdefault("CAREBOT_INDEX_DIR", str(guideline_index_dir))
        campaign = Campaign(tmp_path, api, llm, env)
        made.append(campaign)
        campaign.carebot.start()
        return campaign

    yield build
    for campaign in made:
        campaign.close()
    api.stop()


class Phase:
    """One round of traffic: on each channel a question and an emergency, from new chats."""

    def __init__(self, campaign: Campaign, number: int) -> None:
        self.campaign, self.tag = campaign, f"round {number}"
        base = 700 + number * 10
        self.web_question = WebPatient(campaign, f"web-q-{number}")
        self.web_emergency = WebPatient(campaign, f"web-e-{number}")
        self.threads = [
            self.web_question.say(f"{QUESTION} ({self.tag})"),
            self.web_emergency.say(f"{CHEST} ({self.tag})", emergency=True),
        ]
        self.tg_question, self.tg_emergency = base, base + 1
        campaign.telegram(self.tg_question, "yes")
        campaign.telegram(self.tg_question, f"{QUESTION} ({self.tag})")
        campaign.telegram(self.tg_emergency, f"{STROKE} ({self.tag})", emergency=True)

    def answered(self, timeout_s: float = ANSWERED_S) -> None:
        """Every message of the round got its reply (the web streams ended with one)."""
        for thread in self.threads:
            thread.join(timeout_s)
        for patient in (self.web_question, self.web_emergency):
            assert patient.replies, f"{patient.name}: no reply ({patient.errors})"
        api = self.campaign.api

        def finished(chat: int, count: int) -> bool:  # a streamed draft ends in "…"
            texts = api.texts(chat)
            return len(texts) >= count and not any(t.endswith("…") for t in texts)

        self.campaign.wait(lambda: finished(self.tg_question, 2), f"{self.tag} answer", timeout_s)
        self.campaign.wait(lambda: finished(self.tg_emergency, 1), f"{self.tag} emergency")


def test_redis_blocked_then_killed(make: Make, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    try:
        campaign = make(REDIS_URL=redis.url)
        campaign.hand_off()
        campaign.check_hand_off("before")
        os.kill(redis.proc.pid, signal.SIGSTOP)  # blocked: connections hang, nothing answers
        try:
            blocked = Phase(campaign, 1)
            campaign.check_hand_off("redis blocked")
            blocked.answered()
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        redis.proc.kill()
        redis.proc.wait(10)
        killed = Phase(campaign, 2)
        campaign.check_hand_off("redis killed")
        killed.answered()
        health = campaign.carebot.health()
        assert health["status"] == "degraded" and health["memory"] != "ok", health
        campaign.all_checks()
    finally:
        redis.stop()


def test_database_locked_by_another_process(make: Make) -> None:
    campaign = make()
    campaign.hand_off()
    with database_locked_for(campaign.carebot.db, 4.0):  # a backup, a CLI: within the 5 s wait
        locked = Phase(campaign, 1)
        time.sleep(3.0)  # the emergencies are answered while it is still locked
        campaign.emergencies_answered_in_time()
    locked.answered()
    campaign.check_hand_off("after the lock")
    campaign.all_checks()


def test_chroma_stopped(make: Make, tmp_path: Path) -> None:
    chroma = start_chroma(tmp_path / "chroma")
    try:
        campaign = make(CHROMA_URL=chroma.url)
        campaign.hand_off()
        chroma.stop()
        stopped = Phase(campaign, 1)
        stopped.answered()
        campaign.check_hand_off("chroma stopped")
        answer = stopped.web_question.replies[-1]
        assert answer["kind"] in ("answer", "notice", "error") and answer["text"]
        health = campaign.carebot.health()
        assert health["status"] == "degraded" and health["guidelines"] != "ok", health
        campaign.all_checks()
    finally:
        chroma.stop()


@pytest.mark.parametrize("mode", ["silent", "trickle"])
def test_llm_hung_or_trickling(make: Make, llm: FaultyLLMServer, mode: str) -> None:
    campaign = make()
    campaign.hand_off()
    llm.mode, llm.interval_s = mode, 1.0  # trickle: a token a second, each within the timeout
    started = time.monotonic()
    stalled = Phase(campaign, 1)
    campaign.check_hand_off(f"llm {mode}")
    stalled.answered()
    # The answers came from the guidelines, cited, once the model's deadline passed.
    assert time.monotonic() - started < ANSWERED_S
    for reply in stalled.web_question.replies:
        assert reply["citations"], reply
    campaign.all_checks()


def test_telegram_refusing_sends(make: Make) -> None:
    campaign = make()
    campaign.hand_off()
    api = campaign.api
    api.fail_next("sendMessage", 2, retry_after=1)  # flood control
    api.fail_next("sendMessage", 1, error_code=400)
    api.drop_connection_next("sendMessage")
    refused = Phase(campaign, 1)
    refused.answered(timeout_s=60)
    campaign.check_hand_off("after refusals")
    blocked = 790
    api.block(blocked)  # this patient blocked the bot: given up, nothing repeated
    campaign.telegram(blocked, "yes")
    time.sleep(5)
    assert api.texts(blocked) == []
    # Refused sends are retried, so an emergency may wait out Telegram's own retry_after:
    # here only "answered, and once" is asserted.
    campaign.everything_stored()
    campaign.nothing_twice()
    campaign.log_is_clean()


def test_kill_9_mid_turn_then_restart(make: Make, llm: FaultyLLMServer) -> None:
    campaign = make()
    campaign.hand_off()
    llm.mode, llm.interval_s = "trickle", 0.5
    chat = 780
    campaign.telegram(chat, "yes")
    campaign.wait(lambda: campaign.api.texts(chat), "consent thanks")
    campaign.telegram(chat, QUESTION)
    campaign.wait(lambda: llm.streams > 0, "the model answering")
    time.sleep(1.0)  # mid-answer: the model is trickling, the patient sees "typing..."
    campaign.carebot.kill9()
    # Written while CareBot is down: answered from the inbox within 2 s of the restart.
    down = 781
    late = campaign.telegram(down, f"{STROKE} (while down)", emergency=True)
    llm.mode = "ok"
    campaign.carebot.start()
    back = time.monotonic()
    campaign.until(lambda: late.answered_at is not None, "the late emergency")
    assert late.answered_at is not None and late.answered_at - back < 2.0
    campaign.wait(
        lambda: (
            not campaign.api.texts(chat)[-1].endswith("…") and len(campaign.api.texts(chat)) >= 2
        ),
        "the interrupted answer",
    )
    campaign.check_hand_off("after the restart")
    assert campaign.api.texts(HANDED_OFF)
    campaign.everything_stored()
    campaign.nothing_twice()
    campaign.log_is_clean()


@pytest.mark.parametrize("landed", [False, True], ids=["lost", "landed"])
def test_kill_9_while_the_doctors_alert_is_in_flight(make: Make, landed: bool) -> None:
    """The alert outbox: the alert of a case whose process died mid-send is sent again by the
    restarted process within CAREBOT_CASE_ALERT_UNCONFIRMED_S, not at the re-alert minutes
    later; the patient's instruction is not repeated."""
    campaign = make(CAREBOT_CASE_ALERT_UNCONFIRMED_S="4")
    api, chat = campaign.api, 790 + landed
    api.hold("sendMessage", DOCTORS)
    emergency = campaign.telegram(chat, STROKE, emergency=True)
    campaign.wait(lambda: api.held_calls() > 0, "the alert on its way")
    campaign.until(lambda: emergency.answered_at is not None, "the instruction")
    time.sleep(0.5)  # the reply recorded as delivered, the update finished
    campaign.carebot.kill9()
    api.release(carried_out=landed)
    campaign.carebot.start()
    back = time.monotonic()

    def alerts() -> list[str]:
        return [t for t in api.texts(DOCTORS) if "case #" in t]

    campaign.wait(lambda: len(alerts()) == 1 + landed, "the alert sent again", 60)
    assert time.monotonic() - back < 20, "resent at the re-alert, not by the outbox"
    assert "EMERGENCY" in alerts()[-1] and "Sent again" in alerts()[-1]
    time.sleep(6)  # past another unconfirmed window: confirmed now, so nothing more
    assert len(alerts()) == 1 + landed
    campaign.nothing_twice()
    campaign.log_is_clean()
