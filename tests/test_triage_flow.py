"""Triage in the conversation: follow-up questions, per-level advice, escalation, locale."""

from __future__ import annotations

import json

from sqlmodel import Session, select

from bot.models import IncomingMessage, TriageLevel
from bot.storage.tables import Escalation, Message
from tests.conftest import RuntimeFactory
from tests.fakes import patient_message, scripted

GROUNDED = "Get urgent help today if your fever has lasted more than three days [1]."
# A cold with its red flags denied up front: self-care without questions.
SNIFFLES = "mild runny nose since yesterday, no trouble breathing, no chest pain, not confused"


def msg(text: str, chat: str = "flow", language: str | None = None) -> IncomingMessage:
    return patient_message(text, chat, language=language)


def escalations(runtime) -> list[Escalation]:  # type: ignore[no-untyped-def]
    with Session(runtime.storage.engine) as s:
        return list(s.exec(select(Escalation)).all())


async def test_two_rounds_of_questions_at_most_then_the_held_question_is_answered(
    make_runtime: RuntimeFactory,
) -> None:
    llm = scripted(GROUNDED)
    rt = await make_runtime(llm, triage_followup_rounds=2)
    first = await rt.engine.handle(msg("I have a fever, what can I do?"))
    assert first.kind == "followup" and first.triage is not None
    asked_first = first.triage["asked"]
    # Before any self-care advice: breathing, then the fever's own red flags (age first).
    assert asked_first[:2] == ["rf_breathing", "age"] and len(asked_first) == 3
    assert "1. Are you struggling to breathe" in first.text  # numbered, in lay words
    assert llm.model.prompts == []  # type: ignore[attr-defined]  (no answer before deciding)
    second = await rt.engine.handle(msg("not sure"))  # answers nothing: one more round
    assert second.kind == "followup" and second.triage is not None
    assert not set(second.triage["asked"]) & set(asked_first)  # never the same question twice
    third = await rt.engine.handle(msg("still not sure"))
    assert third.kind == "answer" and "[1] Fever in adults" in third.text
    # Danger was never screened out: not self-care, whatever the word "fever" suggests.
    assert third.level is TriageLevel.ROUTINE
    # The question answered is the one the patient asked first, not "still not sure".
    prompt = llm.model.prompts[-1][-1].content  # type: ignore[attr-defined]
    assert "I have a fever, what can I do?" in prompt


async def test_answers_to_questions_can_raise_the_level(make_runtime: RuntimeFactory) -> None:
    rt = await make_runtime(scripted(GROUNDED), triage_followup_rounds=2)
    first = await rt.engine.handle(msg("my baby has a fever", chat="baby"))
    assert first.kind == "followup" and "How old" in first.text
    assert first.triage is not None and first.triage["asked"][0] == "age"
    second = await rt.engine.handle(msg("6 weeks\nno\nno", chat="baby"))
    assert second.kind == "emergency" and second.level is TriageLevel.EMERGENCY
    assert any(h.rule_id == "EM-INFANT-FEVER" for h in second.red_flags)


async def test_a_yes_to_a_red_flag_question_is_an_emergency(make_runtime: RuntimeFactory) -> None:
    rt = await make_runtime(scripted(GROUNDED), triage_followup_rounds=2)
    first = await rt.engine.handle(msg("bad headache, what can I take?", chat="head"))
    assert first.kind == "followup" and first.triage is not None
    answers = [
        "yes his face has gone droopy" if q == "rf_neuro" else "no" for q in first.triage["asked"]
    ]
    assert "rf_neuro" in first.triage["asked"]
    second = await rt.engine.handle(msg("\n".join(answers), chat="head"))
    assert second.kind == "emergency" and "EM-STROKE-FAST" in {h.rule_id for h in second.red_flags}
    (case,) = escalations(rt)
    assert case.level == "emergency"


async def test_self_care_once_the_red_flags_are_answered_no(make_runtime: RuntimeFactory) -> None:
    rt = await make_runtime(scripted(GROUNDED), triage_followup_rounds=2)
    first = await rt.engine.handle(
        msg("I'm 34, mild fever of 38.2 since yesterday. What can I do?")
    )
    assert first.kind == "followup" and first.triage is not None
    assert "age" not in first.triage["asked"]  # given up front: never asked
    second = await rt.engine.handle(msg("no\nno\nno"))
    assert second.kind == "answer" and second.level is TriageLevel.SELF_CARE
    assert second.text.startswith("🟢") and "call 112" in second.text  # when to seek help


async def test_urgent_gets_advice_and_a_doctors_queue_case_at_once(
    make_runtime: RuntimeFactory,
) -> None:
    rt = await make_runtime(scripted(GROUNDED), triage_followup_rounds=2)
    reply = await rt.engine.handle(msg("my calf is swollen and painful on one side", chat="dvt"))
    assert reply.level is TriageLevel.URGENT
    assert "see a doctor today" in reply.text and "doctors' queue" in reply.text
    (case,) = escalations(rt)
    assert case.level == "urgent" and "UR-LEG-CLOT" in case.reasons
    await rt.engine.handle(msg("it started two days ago", chat="dvt"))
    assert len(escalations(rt)) == 1  # one case per conversation, not one per message


async def test_routine_and_stored_triage_record(make_runtime: RuntimeFactory) -> None:
    rt = await make_runtime(scripted(GROUNDED), triage_followup_rounds=2)
    reply = await rt.engine.handle(msg("I have had a cough for 5 weeks, I'm 40", chat="cough"))
    assert reply.level is TriageLevel.ROUTINE and "RT-PERSISTENT-COUGH" in json.dumps(reply.triage)
    asked = ["rf_breathing", "rf_chest_pain", "temperature"]
    assert reply.triage is not None and reply.triage["asked"] == asked
    (evidence,) = reply.triage["evidence"]["RT-PERSISTENT-COUGH"]
    assert evidence["text"] == "cough" and evidence["source"] == "lexicon"
    with Session(rt.storage.engine) as s:
        stored = s.exec(select(Message).where(Message.direction == "out")).all()[-1]
    meta = stored.meta if isinstance(stored.meta, dict) else json.loads(stored.meta)
    assert meta["triage"]["level"] == "routine" and meta["triage"]["decided_by"] == "rules"
    assert meta["triage"]["asked"] == asked


async def test_general_question_about_red_flags_is_answered_not_escalated(
    make_runtime: RuntimeFactory,
) -> None:
    rt = await make_runtime(scripted(GROUNDED))
    reply = await rt.engine.handle(msg("What are the signs of a stroke?", chat="info"))
    assert reply.kind == "answer" and reply.level is None
    assert "If someone has these signs right now, call 112" in reply.text
    assert escalations(rt) == []
    # The same words about a real person now are an emergency.
    real = await rt.engine.handle(msg("my father can't speak properly", chat="info2"))
    assert real.kind == "emergency"


async def test_emergency_number_follows_the_patient_locale(make_runtime: RuntimeFactory) -> None:
    rt = await make_runtime(scripted(GROUNDED), emergency_numbers={"zh": "120", "en-GB": "999"})
    uk = await rt.engine.handle(msg("I can't breathe", chat="uk", language="en-GB"))
    assert "Call 999 now" in uk.text
    cn = await rt.engine.handle(msg("我喘不过气", chat="cn", language="zh-hans"))
    assert "120" in cn.text
    elsewhere = await rt.engine.handle(msg("I can't breathe", chat="us", language="en-US"))
    assert "Call 112 now" in elsewhere.text  # no entry: the default number


async def test_model_vote_raise_lets_the_model_escalate_but_never_lower(
    make_runtime: RuntimeFactory,
) -> None:
    verdict = json.dumps({"level": "urgent", "reasons": ["worried"], "missing": []})
    rt = await make_runtime(scripted(verdict, GROUNDED), triage_model_vote="raise")
    reply = await rt.engine.handle(msg(f"I'm 30, {SNIFFLES}", chat="m"))
    assert reply.level is TriageLevel.URGENT and reply.triage is not None
    assert reply.triage["decided_by"] == "model"
    low = json.dumps({"level": "self_care", "reasons": [], "missing": []})
    rt2 = await make_runtime(scripted(low, GROUNDED), triage_model_vote="raise")
    urgent = await rt2.engine.handle(msg("I'm 30 and I have had a fever for 6 days", chat="m2"))
    assert urgent.level is TriageLevel.URGENT  # the model said self_care: ignored


async def test_model_vote_advise_records_but_does_not_move_the_level(
    make_runtime: RuntimeFactory,
) -> None:
    verdict = json.dumps({"level": "emergency", "reasons": ["x"], "missing": []})
    rt = await make_runtime(scripted(verdict, GROUNDED), triage_model_vote="advise")
    reply = await rt.engine.handle(msg(f"I'm 30, {SNIFFLES}", chat="a"))
    assert reply.kind == "answer" and reply.level is TriageLevel.SELF_CARE
    assert reply.triage is not None and reply.triage["model_level"] == "emergency"
