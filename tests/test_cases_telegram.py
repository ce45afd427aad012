"""Doctors' cases end to end over the Bot API test server: alert, claim, hand-off, close,
re-alert and expiry, double claims, summaries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from bot.channels.telegram import start_telegram
from bot.models import utcnow
from bot.runtime import Runtime
from bot.storage.tables import AuditEvent, Escalation, Message
from tests.bot_api import BOT, BotAPIServer, group_message, private_message
from tests.conftest import RuntimeFactory
from tests.fakes import scripted

DOCTORS = -100777
PATIENT, DR_ADA, DR_BO = 501, 9001, 9002
SUMMARY = (
    '{"chief_complaint": "crushing chest pain with sweating", '
    '"history": "started 20 minutes ago", "open_questions": ["any cardiac history?"]}'
)


@pytest.fixture
def api() -> Iterator[BotAPIServer]:
    server = BotAPIServer()
    yield server
    server.stop()


async def start(api: BotAPIServer, make_runtime: RuntimeFactory, tmp: Path, **kw: Any) -> Runtime:
    rt = await make_runtime(
        kw.pop("llm", None) or scripted(SUMMARY),
        data_dir=tmp / "data",
        telegram_bot_token="123:TEST",
        telegram_api_base_url=api.base_url,
        doctors_chat_id=DOCTORS,
        dashboard_url="https://carebot.example.org",
        **kw,
    )
    await start_telegram(rt)
    return rt


async def wait(api: BotAPIServer, predicate: Any, what: str, timeout_s: float = 30) -> None:
    assert await api.await_for(predicate, timeout_s), f"timed out waiting for {what}"


def alert_of(api: BotAPIServer) -> tuple[int, dict[str, Any]]:
    """The newest message in the doctors' group and its record."""
    key = max(k for k in api.messages if k[0] == DOCTORS)
    return key[1], api.messages[key]


def as_message(api: BotAPIServer, message_id: int) -> dict[str, Any]:
    record = api.messages[(DOCTORS, message_id)]
    return {
        "message_id": message_id,
        "date": record["date"],
        "chat": {"id": DOCTORS, "type": "supergroup", "title": "Doctors"},
        "from": BOT,
        "text": record["text"],
    }


def doctor(user_id: int, name: str) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": name, "language_code": "en"}


def cases(rt: Runtime) -> list[Escalation]:
    with Session(rt.storage.engine) as s:
        return list(s.exec(select(Escalation)).all())


async def test_emergency_alert_claim_hand_off_and_close(
    api: BotAPIServer, make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    rt = await start(api, make_runtime, tmp_path)
    # Chatter in the doctors' group that is not a reply to an alert is left alone.
    api.send_update(group_message(1, DR_ADA, DOCTORS, first_name="Ada", text="On call today"))
    api.send_update(group_message(2, DR_BO, DOCTORS, first_name="Bo", text="Me too"))
    api.send_update(private_message(8, PATIENT, text="yes"))  # consent: the LLM may summarise
    await wait(api, lambda: api.texts(PATIENT), "thanks")
    api.send_update(private_message(1, PATIENT, text="crushing chest pain and sweating"))
    await wait(api, lambda: len(api.texts(PATIENT)) == 2, "the emergency reply")
    reply = api.texts(PATIENT)[1]
    assert reply.startswith("⚠️") and "Call 112 now" in reply
    assert "number 1" in reply  # the patient's place in the queue

    # The alert: level, summary (LLM, edited in), Claim and dashboard buttons.
    await wait(api, lambda: any("Chief complaint" in t for t in api.texts(DOCTORS)), "summary")
    alert_id, alert = alert_of(api)
    assert "EMERGENCY" in alert["text"] and "case #" in alert["text"]
    assert "EM-" in alert["text"] or "Red flags" in alert["text"]
    buttons = alert["reply_markup"]["inline_keyboard"][0]
    assert buttons[0]["callback_data"].startswith("claim:")
    assert buttons[1]["url"].startswith("https://carebot.example.org/dashboard/cases/")
    (case,) = cases(rt)
    assert case.summary_source == "llm" and case.level == "emergency"

    # Dr Ada claims; Dr Bo's claim is refused politely.
    api.send_callback(DR_ADA, buttons[0]["callback_data"], message=as_message(api, alert_id))
    await wait(api, lambda: "claimed by Ada" in api.messages[(DOCTORS, alert_id)]["text"], "claim")
    await wait(api, lambda: any("Ada has joined" in t for t in api.texts(PATIENT)), "joined")
    api.send_callback(DR_BO, buttons[0]["callback_data"], message=as_message(api, alert_id))
    await wait(
        api,
        lambda: any("Already claimed by Ada" in (a.get("text") or "") for a in _answers(api)),
        "the refusal",
    )
    assert cases(rt)[0].claimed_by == "Ada"

    # Patient -> doctor (private chat), with red flags kept running.
    api.send_update(private_message(2, PATIENT, text="it is spreading to my left arm"))
    await wait(api, lambda: any("Patient (case #" in t for t in api.texts(DR_ADA)), "relay")
    assert "spreading to my left arm" in api.texts(DR_ADA)[-1]
    count = len(api.texts(PATIENT))
    # The rules keep running during the hand-off: a new emergency reaches both.
    api.send_update(private_message(7, PATIENT, text="now I feel faint and I cannot breathe"))
    await wait(api, lambda: any("Red flags" in t for t in api.texts(DR_ADA)), "flags relayed")
    await wait(api, lambda: len(api.texts(PATIENT)) > count, "the emergency instruction")
    assert "Call 112 now" in api.texts(PATIENT)[-1]
    # Doctor -> patient.
    api.send_update(
        private_message(3, DR_ADA, first_name="Ada", text="An ambulance is on its way. Sit down.")
    )
    await wait(
        api, lambda: any(t.startswith("Ada: An ambulance") for t in api.texts(PATIENT)), "relay"
    )
    # A reply to the alert in the group also reaches the patient.
    api.send_update(
        group_message(
            4,
            DR_ADA,
            DOCTORS,
            text="Unlock your front door if you can.",
            reply_to_message=as_message(api, alert_id),
        )
    )
    await wait(api, lambda: any("Unlock your front door" in t for t in api.texts(PATIENT)), "2")

    # Other commands from the doctor are explained to them, never relayed.
    before = len(api.texts(PATIENT))
    api.send_update(private_message(9, DR_ADA, first_name="Ada", text="/help"))
    await wait(api, lambda: any("You hold case #" in t for t in api.texts(DR_ADA)), "the hint")
    assert len(api.texts(PATIENT)) == before

    # /close resolves; the patient is back with the bot.
    api.send_update(private_message(5, DR_ADA, first_name="Ada", text="/close ambulance sent"))
    await wait(api, lambda: any("resolved" in t for t in api.texts(DR_ADA)), "close ack")
    await wait(api, lambda: any("left the conversation" in t for t in api.texts(PATIENT)), "left")
    await wait(api, lambda: "resolved by Ada" in api.messages[(DOCTORS, alert_id)]["text"], "edit")
    (case,) = cases(rt)
    assert case.status == "resolved" and case.outcome == "ambulance sent"
    count = len(api.texts(PATIENT))
    api.send_update(private_message(6, PATIENT, text="/help"))
    await wait(api, lambda: len(api.texts(PATIENT)) > count, "the bot again")
    assert "/doctor" in api.texts(PATIENT)[-1]

    with Session(rt.storage.engine) as s:
        actions = [e.action for e in s.exec(select(AuditEvent)).all()]
        doctor_lines = s.exec(select(Message).where(Message.kind == "doctor")).all()
    assert {"escalation.opened", "escalation.claimed", "escalation.resolved"} <= set(actions)
    assert len(doctor_lines) == 2


def _answers(api: BotAPIServer) -> list[dict[str, Any]]:
    return [p for m, p in api.calls if m == "answerCallbackQuery"]


async def test_unclaimed_urgent_case_is_realerted_then_expires(
    api: BotAPIServer, make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    rt = await start(
        api,
        make_runtime,
        tmp_path,
        llm=scripted("not json at all"),  # the summary falls back to the triage data
        triage_followup_rounds=2,
        case_realert_s={"urgent": 60},
        case_alerts_before_expiry=2,
    )
    api.send_update(private_message(1, PATIENT, text="yes"))  # consent (typed)
    await wait(api, lambda: api.texts(PATIENT), "thanks")
    api.send_update(private_message(2, PATIENT, text="my calf is swollen and painful on one side"))
    await wait(api, lambda: api.texts(DOCTORS), "the alert")
    await wait(api, lambda: cases(rt) and cases(rt)[0].summary, "the summary")
    (case,) = cases(rt)
    assert case.level == "urgent" and case.summary_source == "rules"
    assert "UR-LEG-CLOT" in case.summary and "Chief complaint: my calf" in case.summary

    await rt.cases.tick(utcnow() + timedelta(seconds=30))  # not due yet
    assert len(api.texts(DOCTORS)) == 1
    await rt.cases.tick(utcnow() + timedelta(seconds=61))
    await wait(api, lambda: len(api.texts(DOCTORS)) == 2, "the re-alert")
    assert "Still unclaimed" in api.texts(DOCTORS)[-1]
    first_alert = min(k for k in api.messages if k[0] == DOCTORS)
    assert not api.messages[first_alert].get("reply_markup")  # the old Claim is gone

    await rt.cases.tick(utcnow() + timedelta(seconds=200))
    await wait(api, lambda: any("No doctor could take" in t for t in api.texts(PATIENT)), "told")
    assert "see a doctor today" in api.texts(PATIENT)[-1]
    await wait(api, lambda: "expired" in api.texts(DOCTORS)[-1], "alert edited")
    assert cases(rt)[0].status == "expired"
    await asyncio.sleep(0.2)


async def test_patient_asks_for_a_doctor(
    api: BotAPIServer, make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    rt = await start(api, make_runtime, tmp_path)
    api.send_update(private_message(1, PATIENT, text="/start"))
    await wait(api, lambda: api.texts(PATIENT), "welcome")
    api.send_callback(PATIENT, "consent:yes")
    await wait(api, lambda: len(api.texts(PATIENT)) == 2, "thanks")
    api.send_update(private_message(2, PATIENT, text="/doctor"))
    await wait(api, lambda: len(api.texts(PATIENT)) == 3, "doctor requested")
    assert "asked for a doctor" in api.texts(PATIENT)[2] and "number 1" in api.texts(PATIENT)[2]
    await wait(api, lambda: any("ROUTINE" in t for t in api.texts(DOCTORS)), "alert")
    assert cases(rt)[0].opened_by == "patient"


async def test_operator_opens_a_case_from_the_command_line(
    api: BotAPIServer, make_runtime: RuntimeFactory, tmp_path: Path, monkeypatch: Any
) -> None:
    from typer.testing import CliRunner

    from bot.cli import app

    rt = await start(api, make_runtime, tmp_path)
    api.send_update(private_message(1, PATIENT, text="/help"))
    await wait(api, lambda: api.texts(PATIENT), "help")
    monkeypatch.setenv("CAREBOT_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    missing = await asyncio.to_thread(
        runner.invoke, app, ["cases", "open", "telegram:424242", "--reason", "x"]
    )
    assert missing.exit_code == 1 and "no conversation" in missing.output
    opened = await asyncio.to_thread(
        runner.invoke,
        app,
        ["cases", "open", f"telegram:{PATIENT}", "--reason", "asked by phone", "--by", "sam"],
    )
    assert opened.exit_code == 0, opened.output
    await rt.cases.tick()  # the running CareBot picks it up (within CAREBOT's 5 s tick)
    await wait(api, lambda: any("URGENT" in t for t in api.texts(DOCTORS)), "the alert")
    (case,) = cases(rt)
    assert case.opened_by == "operator" and case.reasons == ["asked by phone"]
    listed = await asyncio.to_thread(runner.invoke, app, ["cases", "list"])
    assert f"#{case.id}" in listed.output and "asked by phone" in listed.output
