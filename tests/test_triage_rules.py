"""Red-flag rules: fire on emergencies in lay wording and Chinese, not on negations."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.models import TriageLevel
from bot.triage.rules import DEFAULT_RULES, TriageRules

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


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("runny nose and sneezing for 3 days", TriageLevel.SELF_CARE),
        ("I'm 30 and I've had a cough for 5 weeks", TriageLevel.ROUTINE),
        ("burning when I pee", TriageLevel.ROUTINE),
        ("burning when I pee and a fever and pain in my back", TriageLevel.URGENT),
        ("my 2 month old has a temperature of 38.4", TriageLevel.EMERGENCY),
        ("my 4 month old has a temperature of 39.2", TriageLevel.URGENT),
        ("my 3 year old has a temperature of 38.4 since this morning", TriageLevel.SELF_CARE),
        ("fever for 6 days now", TriageLevel.URGENT),
        ("I'm 12 weeks pregnant and bleeding heavily", TriageLevel.EMERGENCY),
        ("I'm pregnant and have some spotting", TriageLevel.URGENT),
        ("mild back pain after lifting boxes yesterday", TriageLevel.SELF_CARE),
        ("back pain and I can't control my bladder", TriageLevel.EMERGENCY),
        ("I have hay fever, itchy eyes every spring", TriageLevel.SELF_CARE),
        ("stung by a bee, now my throat feels tight and I'm wheezing", TriageLevel.EMERGENCY),
        ("nothing in particular", TriageLevel.ROUTINE),  # no rule: the default level
    ],
)
def test_levels_below_emergency_come_from_clinical_criteria(text: str, level: TriageLevel) -> None:
    assert RULES.level(RULES.check([text])) is level


@pytest.mark.parametrize(
    "text",
    [
        "cant breathe",
        "CAN'T BREATHE!!!",
        "I can’t breathe",  # curly apostrophe
        "i caaaant breathe",
        "crushing chset pain and swaeting",  # typos
        "my face is droopping and speech slurred",
        "胸口痛，出冷汗",
        "我爸爸说话不清，脸歪了",
        "I have 胸痛 and sweating",  # mixed languages
    ],
)
def test_typos_shouting_and_other_languages_still_fire(text: str) -> None:
    assert RULES.level(RULES.check([text])) is TriageLevel.EMERGENCY


@pytest.mark.parametrize(
    "text",
    [
        "no fever, cough or vomiting",
        "she denies fever, chills and rigors",
        "without any chest pain or sweating",
        "没有发烧，也没有胸痛",
    ],
)
def test_negated_lists_do_not_fire(text: str) -> None:
    assert fired(text) == set()


def test_a_bare_no_does_not_negate_an_unclosed_list() -> None:
    # "no fever, chest pain and sweating" may mean the patient has the chest pain: fire.
    assert "EM-CARDIAC-CHEST-PAIN" in fired("no fever, chest pain and sweating")


def test_contradiction_keeps_the_safer_reading() -> None:
    # "actually no pain now" does not cancel what was said: under-triage is the worse error.
    hits = RULES.check(["crushing chest pain and sweating", "actually no pain now"])
    assert RULES.level(hits) is TriageLevel.EMERGENCY


def test_vital_signs_are_scored_news2_style() -> None:
    assert "VITALS-NEWS2-HIGH" in fired("oxygen saturation 88%, heart rate 120")
    assert "VITALS-NEWS2-MEDIUM" in fired("temperature 39.5, pulse 115, I am 40")
    # A toddler's normal pulse is not scored on adult bands.
    assert not {"VITALS-NEWS2-HIGH", "VITALS-NEWS2-MEDIUM"} & fired("my 2 year old, pulse 125")


def test_a_very_long_history_is_still_checked_quickly_and_fully() -> None:
    history = ["my knee is a bit stiff"] * 200 + ["now I can't breathe"]
    assert RULES.level(RULES.check(history)) is TriageLevel.EMERGENCY


def test_rule_file_problems_are_reported(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load(DEFAULT_RULES.read_text())
    data["rules"][0]["all"] = ["nonexistent"]
    bad = tmp_path / "rules.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="unknown finding"):
        TriageRules(bad)
    data["rules"][0]["all"] = [{"en": ["Chest Pain"]}]
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="lower case"):
        TriageRules(bad)
