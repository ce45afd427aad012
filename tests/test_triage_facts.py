"""Facts read from patient text: age, duration, pregnancy, vital signs."""

from __future__ import annotations

import pytest

from bot.triage.facts import extract_facts


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("I'm 45 and have a headache", 45),
        ("a 48-year-old woman", 48),
        ("my 5-month-old son", 5 / 12),
        ("she is 6 weeks old", 6 / 52),
        ("我今年30岁", 30),
        ("I'm 30 weeks pregnant", None),
    ],
)
def test_age(text: str, age: float | None) -> None:
    facts = extract_facts([text])
    assert facts.age_years == pytest.approx(age) if age is not None else facts.age_years is None


def test_a_baby_without_an_age_is_a_guess_that_asks() -> None:
    facts = extract_facts(["my baby is hot"])
    assert facts.age_years is not None and facts.age_years < 1 and not facts.age_stated


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("cough for 3 days", 3),
        ("a 2-week history of pain", 14),
        ("started two months ago", 60),
        ("since yesterday", 1),
        ("咳嗽三天了", 3),
        ("a 34-year-old with a cough", None),  # an age is not a duration
        ("no duration here", None),
    ],
)
def test_duration(text: str, days: float | None) -> None:
    got = extract_facts([text]).duration_days
    assert got == pytest.approx(days) if days is not None else got is None


def test_vitals_and_units() -> None:
    facts = extract_facts(["temperature of 102F, HR 118 bpm, BP 88/50, sats 91%, RR 26"])
    v = facts.vitals
    assert v.temperature_c == pytest.approx(38.9, abs=0.1)
    assert (v.heart_rate, v.systolic_bp, v.spo2, v.resp_rate) == (118, 88, 91, 26)


def test_pregnancy_and_its_negation() -> None:
    assert extract_facts(["I am 8 weeks pregnant"]).pregnant is True
    assert extract_facts(["I'm not pregnant"]).pregnant is False
    assert extract_facts(["headache"]).pregnant is None
