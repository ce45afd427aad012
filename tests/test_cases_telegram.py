"""Doctors' cases end to end over the Bot API test server: alert, claim, hand-off, close,
re-alert and expiry, double claims, summaries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from bot.channels.telegram import start_telegram
from bot.channels.telegram.doctors import ERASED
from bot.dashboard.accounts import StaffAccounts
from bot.dashboard.roles import Role
from bot.models import utcnow
from bot.runtime import Runtime
from bot.storage.tables import AuditEvent, Escalation, Message
from tests.bot_api import BOT, BotAPIServer, group_message, private_message
from tests.conftest import RuntimeFactory
from tests.fakes import scripted

PASSWORD = "correct horse battery staple"
DOCTORS = -100777
PATIENT, DR_ADA, DR_BO = 501, 9001, 9002
SUMMARY = (
    '{"chief_complaint": "crushing chest pain with sweating", '
    '"history": "started 20 minutes ago", "open_questions": ["any cardiac history?"]}'
)


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
    accounts = StaffAccounts(rt.storage)
    for username, name, telegram_id in (("ada", "Ada", DR_ADA), ("bo", "Bo", DR_BO)):
        await accounts.add(username, name, Role.DOCTOR, PASSWORD, telegram_user_id=telegram_id)
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
    await wait(
        api, lambda: any("Ada (doctor) has joined" in t for t in api.texts(PATIENT)), "joined"
    )
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
        api,
        lambda: any(t.startswith("Ada (doctor): An ambulance") for t in api.texts(PATIENT)),
        "relay",
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
    # Every showing of the patient's words in Telegram is a read on the record: the group's
    # alert (and its edits) and each relay to Dr Ada's private chat.
    reads = {
        (e.actor, e.details["via"])
        for e in _all(rt, AuditEvent)
        if e.action == "case.read" and e.subject_id == str(case.id)
    }
    assert {
        (f"telegram-chat:{DOCTORS}", "telegram alert"),
        (f"telegram-chat:{DOCTORS}", "telegram alert edited"),
        (f"telegram-chat:{DR_ADA}", "telegram relay"),
    } <= reads


def _all(rt: Runtime, table: Any) -> list[Any]:
    with Session(rt.storage.engine) as s:
        return list(s.exec(select(table)).all())


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


def _private_from_bot(api: BotAPIServer, chat: int, contains: str) -> dict[str, Any]:
    """The bot's newest message in a private chat containing `contains`, as a reply target."""
    key = max(k for k, m in api.messages.items() if k[0] == chat and contains in m["text"])
    record = api.messages[key]
    return {
        "message_id": key[1],
        "date": record["date"],
        "chat": {"id": chat, "type": "private", "first_name": "Ada"},
        "from": BOT,
        "text": record["text"],
    }


async def test_a_doctor_holding_two_cases_always_says_which(
    api: BotAPIServer, make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    rt = await start(api, make_runtime, tmp_path)
    first, second = PATIENT, PATIENT + 1
    for n, chat in enumerate((first, second)):
        api.send_update(private_message(10 + n, chat, text="crushing chest pain and sweating"))
    await wait(api, lambda: len(cases(rt)) == 2 and all(c.alert_message_id for c in cases(rt)), "")
    ids = {int(c.conversation_id): int(c.id or 0) for c in cases(rt)}
    for case in cases(rt):
        alert = as_message(api, int(case.alert_message_id or 0))
        api.send_callback(DR_ADA, f"claim:{case.id}", message=alert)
    await wait(api, lambda: all(c.status == "claimed" for c in cases(rt)), "both claims")
    for chat in (first, second):
        await wait(api, lambda c=chat: any("has joined" in t for t in api.texts(c)), "joined")
    case_of = {c.id: c for c in cases(rt)}
    first_case = min(case_of)  # the first patient's conversation was stored first
    second_case = max(case_of)
    assert sorted(ids.values()) == [first_case, second_case]

    # A message naming no case is not guessed at.
    sent_before = len(api.texts(first)) + len(api.texts(second))
    api.send_update(private_message(20, DR_ADA, first_name="Ada", text="Sit down please."))
    await wait(api, lambda: any("You hold cases" in t for t in api.texts(DR_ADA)), "the question")
    assert len(api.texts(first)) + len(api.texts(second)) == sent_before

    # Replying to a patient's relayed message answers that patient.
    api.send_update(private_message(21, second, text="my left arm hurts too"))
    await wait(api, lambda: any(f"case #{second_case})" in t for t in api.texts(DR_ADA)), "relay")
    relay = _private_from_bot(api, DR_ADA, f"case #{second_case})")
    api.send_update(
        private_message(
            22,
            DR_ADA,
            first_name="Ada",
            text="Chew an aspirin if you have one.",
            reply_to_message=relay,
        )
    )
    await wait(api, lambda: any("Chew an aspirin" in t for t in api.texts(second)), "to second")
    assert not any("Chew an aspirin" in t for t in api.texts(first))
    await wait(api, lambda: f"→ case #{second_case}" in api.texts(DR_ADA), "the confirmation")

    # /case N picks a case explicitly, for a message or for /close.
    api.send_update(
        private_message(23, DR_ADA, first_name="Ada", text=f"/case {first_case} Unlock the door.")
    )
    await wait(api, lambda: any("Unlock the door" in t for t in api.texts(first)), "to first")
    api.send_update(
        private_message(24, DR_ADA, first_name="Ada", text=f"/case {first_case} /close seen")
    )
    await wait(api, lambda: case_of_status(rt, first_case) == "resolved", "first closed")
    # One case left: a plain message goes to it.
    api.send_update(private_message(25, DR_ADA, first_name="Ada", text="Help is coming."))
    await wait(api, lambda: any("Help is coming" in t for t in api.texts(second)), "to second")
    assert not any("Help is coming" in t for t in api.texts(first))


def case_of_status(rt: Runtime, case_id: int) -> str:
    return next(c.status for c in cases(rt) if c.id == case_id)


async def test_a_doctors_group_that_refuses_alerts_is_reported_retried_and_told(
    api: BotAPIServer, make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    rt = await start(api, make_runtime, tmp_path)
    rt.cases.options = dataclasses.replace(rt.cases.options, alert_retry_s=0.2, tick_s=0.2)
    api.block(DOCTORS)  # the bot was removed from the group
    api.send_update(private_message(1, PATIENT, text="crushing chest pain and sweating"))
    await wait(api, lambda: any("could not reach our doctors" in t for t in api.texts(PATIENT)), "")
    texts = api.texts(PATIENT)
    assert "Call 112 now" in texts[0]
    assert not any("I have alerted" in t for t in texts)  # nothing claims what did not happen
    (case,) = cases(rt)
    assert case.alert_error == "Forbidden" and case.alert_message_id is None
    assert (await rt.cases.alert_status(True)).startswith("failing: 1 open cases")

    api.unblock(DOCTORS)  # the group is fixed: the sweep gets the alert out
    await wait(api, lambda: cases(rt)[0].alert_message_id is not None, "the retried alert", 15)
    assert any("EMERGENCY" in t for t in api.texts(DOCTORS))
    assert await rt.cases.alert_status(True) == "ok"
    told = [t for t in api.texts(PATIENT) if "could not reach our doctors" in t]
    assert len(told) == 1  # told once, however many retries it took
    with Session(rt.storage.engine) as s:
        failures = s.exec(
            select(AuditEvent).where(AuditEvent.action == "escalation.alert_failed")
        ).all()
    assert failures and failures[0].details["reason"] == "Forbidden"


async def test_forget_reaches_doctors_chats_audit_caches_and_the_database_file(
    api: BotAPIServer, make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    # No clinical record kept apart (tests/test_clinical_record.py has the default).
    rt = await start(api, make_runtime, tmp_path, clinical_record_days=0)
    secret = "my neighbour Zebedee Quartermaine found me"
    api.send_update(private_message(8, PATIENT, text="yes"))
    await wait(api, lambda: api.texts(PATIENT), "thanks")
    api.send_update(private_message(1, PATIENT, text="crushing chest pain and sweating"))
    await wait(api, lambda: any("Chief complaint" in t for t in api.texts(DOCTORS)), "alert")
    alert_id, alert = alert_of(api)
    claim = alert["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    api.send_callback(DR_ADA, claim, message=as_message(api, alert_id))
    await wait(api, lambda: "claimed by Ada" in api.messages[(DOCTORS, alert_id)]["text"], "claim")
    api.send_update(private_message(2, PATIENT, text=f"{secret}, the pain is worse"))
    await wait(api, lambda: any("Zebedee" in t for t in api.texts(DR_ADA)), "relay")
    api.send_update(private_message(5, DR_ADA, first_name="Ada", text=f"/close {secret}"))
    await wait(api, lambda: any("resolved" in t for t in api.texts(DR_ADA)), "close ack")
    assert rt.engine.rules.context._cache  # the patient's sentences were read and kept

    api.send_update(private_message(3, PATIENT, text="/forget"))
    await wait(api, lambda: any("cannot be undone" in t for t in api.texts(PATIENT)), "ask")
    api.send_callback(PATIENT, "forget:yes")
    await wait(api, lambda: any("is deleted" in t for t in api.texts(PATIENT)), "forgotten")

    # The doctors' chats: the alert and the relay now say only that the data was erased.
    await wait(api, lambda: api.messages[(DOCTORS, alert_id)]["text"] == ERASED, "alert blanked")
    assert not api.messages[(DOCTORS, alert_id)].get("reply_markup")  # no Claim button left
    doctors_view = " ".join(api.texts(DOCTORS) + api.texts(DR_ADA))
    assert "Zebedee" not in doctors_view and "Chief complaint" not in doctors_view
    # The audit keeps who did what and when, not the outcome note that quoted the patient.
    with Session(rt.storage.engine) as s:
        events = s.exec(select(AuditEvent).where(AuditEvent.subject_type == "escalation")).all()
    assert {"escalation.opened", "escalation.claimed", "escalation.resolved"} <= {
        e.action for e in events
    }
    assert all("Zebedee" not in json.dumps(e.details) for e in events)
    # In-memory caches hold no sentence of theirs; the database file and its WAL no byte.
    assert not rt.engine.rules.context._cache
    for path in (tmp_path / "data").glob("carebot.db*"):
        assert b"Zebedee" not in path.read_bytes(), path.name


async def test_a_group_that_must_not_hold_health_data_gets_none(
    api: BotAPIServer, make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    # CAREBOT_TELEGRAM_PATIENT_TEXT=false: alerts and relays say the level, the case and
    # where to read it; nothing the patient wrote, no summary, no reasons.
    rt = await start(api, make_runtime, tmp_path, telegram_patient_text=False)
    api.send_update(private_message(8, PATIENT, text="yes"))  # consent
    await wait(api, lambda: api.texts(PATIENT), "thanks")
    api.send_update(private_message(1, PATIENT, text="crushing chest pain and sweating"))
    await wait(api, lambda: api.texts(DOCTORS), "the alert")
    await wait(api, lambda: cases(rt) and cases(rt)[0].summary, "the summary")
    await asyncio.sleep(0.5)  # the alert's edit with the summary, had there been one
    alert_id, alert = alert_of(api)
    assert "EMERGENCY" in alert["text"] and "in the dashboard only" in alert["text"]
    api.send_callback(DR_ADA, f"claim:{cases(rt)[0].id}", message=as_message(api, alert_id))
    await wait(api, lambda: "claimed by Ada" in api.messages[(DOCTORS, alert_id)]["text"], "claim")
    api.send_update(private_message(2, PATIENT, text="it is spreading to my left arm"))
    await wait(api, lambda: any("wrote again" in t for t in api.texts(DR_ADA)), "the notice")
    staff_texts = api.texts(DOCTORS) + api.texts(DR_ADA)
    staff_texts += [m["text"] for k, m in api.messages.items() if k[0] in (DOCTORS, DR_ADA)]
    for words in ("crushing", "sweating", "left arm", "Chief complaint", "EM-"):
        assert all(words not in t for t in staff_texts), words
    assert "https://carebot.example.org/dashboard/cases/" in api.texts(DR_ADA)[-1]
    # Nothing was shown there, so nothing is on record as read there.
    reads = [e for e in _all(rt, AuditEvent) if e.action == "case.read"]
    assert all(not e.actor.startswith("telegram-chat:") for e in reads)


async def test_mydata_sends_the_patient_a_file_of_everything_stored(
    api: BotAPIServer, make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    await start(api, make_runtime, tmp_path)
    api.send_update(private_message(8, PATIENT, text="yes"))  # consent
    await wait(api, lambda: api.texts(PATIENT), "thanks")
    api.send_update(private_message(1, PATIENT, text="crushing chest pain and sweating"))
    await wait(api, lambda: len(api.texts(PATIENT)) >= 2, "the emergency reply")
    api.send_update(private_message(2, PATIENT, text="/mydata"))
    await wait(api, lambda: api.documents, "the file")
    chat, name, content, caption = api.documents[0]
    assert chat == PATIENT and name.endswith(".json") and "/forget" in caption
    bundle = json.loads(content)
    said = [
        e["resource"]["payload"][0]["contentString"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Communication"
    ]
    assert "crushing chest pain and sweating" in said
    encounters = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter"
    ]
    assert encounters and encounters[0]["priority"]["text"] == "emergency"
    assert encounters[0]["reasonCode"]  # why the case was opened


async def test_a_re_alert_whose_old_button_cannot_be_removed_is_still_sent_once(
    api: BotAPIServer, make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    # The alert is confirmed the moment it lands; the old alert's Claim button is tidied
    # after, best effort. Before, a refused tidy-up left the re-alert unconfirmed and the
    # timers sent it again every tick.
    rt = await start(api, make_runtime, tmp_path, case_alert_unconfirmed_s=2)
    api.send_update(private_message(1, PATIENT, text="crushing chest pain and sweating"))
    await wait(api, lambda: any("EMERGENCY" in t for t in api.texts(DOCTORS)), "the alert")
    await wait(api, lambda: cases(rt)[0].alert_retry_at is None, "the alert confirmed")
    api.fail_next("editMessageReplyMarkup", times=20, error_code=403)
    await rt.cases.tick(utcnow() + timedelta(seconds=121))  # the emergency's re-alert
    await wait(api, lambda: any("Still unclaimed" in t for t in api.texts(DOCTORS)), "re-alert")
    for _ in range(4):  # past the unconfirmed window, tick after tick
        await asyncio.sleep(0.6)
        await rt.cases.tick()
    texts = api.texts(DOCTORS)
    assert sum("Still unclaimed" in t for t in texts) == 1, texts
    assert not any("Sent again" in t for t in texts), texts
    assert cases(rt)[0].alert_retry_at is None
