"""The red-flag interview: catalogue ids, screens first, lay answers, self-care only when safe.

Messages are written for these tests; none comes from an evaluation set.
"""

from __future__ import annotations

import pytest

from bot.models import TriageLevel
from bot.triage.interview import Answer, Catalogue, Interview, read_answer, read_answers
from bot.triage.rules import TriageRules
from bot.triage.service import PatientMessage, TriageService

SERVICE = TriageService(TriageRules())
CATALOGUE = Catalogue.load()


def settle(opening: str, answers: dict[str, str], language: str = "en") -> tuple[object, list]:
    """Play a patient who answers from `answers` ("not sure" otherwise) for two rounds."""
    conversation = [PatientMessage(text=opening)]
    asked: list[str] = []
    for round_number in range(3):
        result = SERVICE.decide(conversation, language, ask=round_number < 2)
        if not result.questions:
            return result, asked
        asked += result.questions
        reply = "\n".join(answers.get(q, "not sure") for q in result.questions)
        conversation.append(PatientMessage(text=reply, asked=result.questions))
    return result, asked


def test_every_catalogue_id_is_used_consistently() -> None:
    rules = TriageRules()
    for qid, question in CATALOGUE.questions.items():
        assert question.text.get("en") and question.text.get("zh"), qid
        if question.kind == "screen":
            assert question.if_yes in rules.ids, qid
    for rule in rules.rules:
        for qid in rule.spec.ask + rule.spec.screens:
            assert qid in CATALOGUE.questions, (rule.spec.id, qid)


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("yes", Answer.YES),
        ("Yeah a bit", Answer.YES),
        ("yep since this morning", Answer.YES),
        ("nope", Answer.NO),
        ("No, none of that", Answer.NO),
        ("not really", Answer.NO),
        ("not sure", Answer.UNSURE),
        ("dunno tbh", Answer.UNSURE),
        ("有", Answer.YES),
        ("没有", Answer.NO),
        ("不确定", Answer.UNSURE),
        ("2) no", Answer.NO),
    ],
)
def test_lay_answers_are_read(text: str, answer: Answer) -> None:
    assert read_answer(text) is answer


def test_answers_map_in_order_and_a_lone_no_answers_the_round() -> None:
    asked = ["rf_breathing", "rf_chest_pain", "age"]
    assert read_answers("no\nyes\n45", asked) == dict(zip(asked, ["no", "yes", "45"], strict=True))
    assert read_answers("no", ["rf_breathing", "rf_sepsis"]) == {
        "rf_breathing": "no",
        "rf_sepsis": "no",
    }
    # Two answers for three questions: nothing is guessed.
    assert read_answers("no\nyes", asked) == {}


def test_most_dangerous_first_and_stated_facts_are_never_asked() -> None:
    _, asked = settle("I've had a sore throat for the past month", {})
    assert "duration" not in asked  # "for the past month" is a duration
    assert asked[0] == "rf_breathing"
    baby = SERVICE.decide(["my baby feels hot"])
    assert baby.questions[0] == "age"  # under three months any fever is an emergency
    told = SERVICE.decide(["my 5 month old feels hot"])
    assert "age" not in told.questions


def test_a_yes_to_a_screen_fires_its_rule_and_ends_the_questions() -> None:
    result, asked = settle("my head hurts", {"rf_neuro": "yes his face looks droopy"})
    assert "rf_neuro" in asked
    assert result.level is TriageLevel.EMERGENCY and not result.questions
    (hit,) = [h for h in result.hits if h.rule_id == "EM-STROKE-FAST"]
    assert any(e.source == "answer" and e.finding == "rf_neuro" for e in hit.evidence)


def test_self_care_only_once_its_red_flags_are_screened_out() -> None:
    first = SERVICE.decide(["runny nose and sneezing since yesterday"])
    assert first.level is TriageLevel.ROUTINE and first.questions  # not yet screened
    no_danger = {"rf_breathing": "no", "rf_chest_pain": "no", "rf_consciousness": "nope"}
    result, _ = settle("runny nose and sneezing since yesterday", no_danger)
    assert result.level is TriageLevel.SELF_CARE
    unsure, _ = settle("runny nose and sneezing since yesterday", {})
    assert unsure.level is TriageLevel.ROUTINE  # "not sure" never screens out danger


def test_denials_in_the_opening_count_as_screened() -> None:
    text = (
        "blocked nose and sneezing for two days, no trouble breathing, no chest pain, not confused"
    )
    result = SERVICE.decide([text])
    assert result.level is TriageLevel.SELF_CARE and result.questions == []


def test_no_rule_at_all_asks_the_general_screens_then_settles_on_routine() -> None:
    result, asked = settle("I just feel a bit off today", {})
    assert asked[:2] == ["rf_breathing", "rf_consciousness"]
    assert result.level is TriageLevel.ROUTINE


def test_emergencies_are_never_held_for_questions() -> None:
    result = SERVICE.decide(["he collapsed and isn't breathing"])
    assert result.level is TriageLevel.EMERGENCY and result.questions == []


def test_at_most_two_rounds_and_never_the_same_question_twice() -> None:
    _, asked = settle("my tummy hurts", {})
    assert len(asked) == len(set(asked)) <= 2 * SERVICE.questions_per_round


def test_chinese_answers_work_the_same() -> None:
    result, asked = settle("我头疼", {"rf_neuro": "有，嘴歪了"}, language="zh")
    assert "rf_neuro" in asked and result.level is TriageLevel.EMERGENCY


def test_a_harmless_word_never_decides_self_care() -> None:
    # "sting" matches the insect-sting pathway; the swollen tongue decides the level.
    result = SERVICE.decide(["after the wasp sting my tongue feels fat and my voice is croaky"])
    assert result.level is TriageLevel.EMERGENCY
    interview = Interview()
    assert interview.complaints(["after the wasp sting"])[0] == "allergy"
