"""Red-flag rules: fire on emergencies in lay wording and Chinese, not on negations."""

from __future__ import annotations

import pytest

from bot.models import TriageLevel
from bot.triage.rules import TriageRules

RULES = TriageRules()


def fired(*texts: str) -> set[str]:
    return {h.rule_id for h in RULES.check(list(texts))}


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("crushing chest pain and sweating for 20 minutes", "EM-CARDIAC-CHEST-PAIN"),
        ("I have chest tightness and my left arm hurts", "EM-CARDIAC-CHEST-PAIN"),
        ("i cant breathe", "EM-CANNOT-BREATHE"),
        ("my dad's face is drooping and his speech is slurred", "EM-STROKE-FAST"),
        ("my throat is closing up after eating peanuts", "EM-ANAPHYLAXIS"),
        ("she is unresponsive and won't wake up", "EM-UNRESPONSIVE"),
        ("I want to kill myself", "EM-SELF-HARM"),
        ("胸口痛，出冷汗", "EM-CARDIAC-CHEST-PAIN"),
        ("我喘不过气", "EM-CANNOT-BREATHE"),
    ],
)
def test_emergencies_fire(text: str, rule: str) -> None:
    assert rule in fired(text)
    assert RULES.level(RULES.check([text])) is TriageLevel.EMERGENCY


@pytest.mark.parametrize(
    "text",
    [
        "no chest pain, no sweating, just a runny nose",
        "I don't have chest pain but I am sweating a lot after the gym",
        "没有胸痛，也没有出汗",
        "I have a mild fever since yesterday",
        "my arm is warm after the vaccine",
        "",
    ],
)
def test_negations_and_ordinary_complaints_are_not_emergencies(text: str) -> None:
    assert not any(rule.startswith("EM-") for rule in fired(text))


def test_rules_see_the_whole_conversation() -> None:
    assert fired("I have chest pain") == {"UR-CHEST-PAIN"}
    assert "EM-CARDIAC-CHEST-PAIN" in fired("I have chest pain", "now I am sweating and clammy")


def test_negation_does_not_cross_messages() -> None:
    assert "EM-CANNOT-BREATHE" in fired("no fever", "I can't breathe")


def test_explanation_in_the_patient_language() -> None:
    (hit,) = RULES.check(["我喘不过气"], "zh")
    assert "呼吸" in hit.explanation
