"""ConText on patient wording: what is denied, past, supposed or someone else's does not count.

Every sentence here is written for these tests (none from an evaluation set).
"""

from __future__ import annotations

import re

import pytest

from bot.triage.context import SUPPRESSING, ClinicalContext, Flag, is_general_question

CONTEXT = ClinicalContext()


def flags_of(text: str, finding: str) -> frozenset[Flag]:
    m = re.search(re.escape(finding), text, re.I)
    assert m is not None, finding
    (flags,) = CONTEXT.flags(text, [m.span()])
    return flags


@pytest.mark.parametrize(
    ("text", "finding", "flag"),
    [
        ("I don't have any chest pain", "chest pain", Flag.NEGATED),
        ("she denies headache, fever, or neck stiffness", "neck stiffness", Flag.NEGATED),
        ("had a fit back when I was a kid", "fit", Flag.HISTORICAL),
        ("I used to get asthma attacks", "asthma attacks", Flag.HISTORICAL),
        ("what should I do if my baby gets a fever", "fever", Flag.HYPOTHETICAL),
        ("heart attacks run in the family, my dad died of one", "heart attack", Flag.OTHER_PERSON),
        ("what are the warning signs of meningitis?", "meningitis", Flag.GENERAL),
        ("我没有发烧", "发烧", Flag.NEGATED),
        ("我小时候得过哮喘", "哮喘", Flag.HISTORICAL),
        ("如果孩子发烧了怎么办", "发烧", Flag.HYPOTHETICAL),
        # A list of pertinent negatives: an item that names a finding to deny a feature of it.
        ("no rash, no vomiting, the headache not worse lying down", "headache", Flag.NEGATED),
        ("no fever, no wheeze, tummy pain doesn't move to the back", "tummy pain", Flag.NEGATED),
        ("没有发烧，没有呕吐，腹痛不向后背放射", "腹痛", Flag.NEGATED),
    ],
)
def test_findings_the_patient_does_not_have_now_are_flagged(
    text: str, finding: str, flag: Flag
) -> None:
    assert flag in flags_of(text, finding)


@pytest.mark.parametrize(
    ("text", "finding"),
    [
        # A cue inside the finding is part of it.
        ("i can't breathe", "can't breathe"),
        ("he isn't breathing", "isn't breathing"),
        # A real condition, not a hypothetical one.
        ("if I lie flat I can't breathe at all", "can't breathe"),
        # A bare "no" does not carry over a comma into what the patient does have.
        ("no temperature, chest pain since lunchtime", "chest pain"),
        # "now" ends the past.
        ("asthma as a child, now wheezing and tight", "wheezing"),
        # Clinicians' "3-day history" is not the past.
        ("a 3-day history of vomiting", "vomiting"),
        # A parent writing for a child is writing for the patient.
        ("my son has a rash that won't fade", "rash"),
        # Doubt never removes a finding.
        ("not sure but I think his face is drooping", "face is drooping"),
        # A question about what is happening now is a report.
        ("her lips are swelling right now, what does that mean?", "lips are swelling"),
        ("我爸突然说不出话", "说不出话"),
        ("孩子喘不上气", "喘不上气"),
        # Denying a feature outside a list of denials still reports the finding...
        ("the chest pain is not spreading anywhere", "chest pain"),
        # ...so does claiming it, or saying that it goes on.
        ("no fever, no cough, my chest pain isn't spreading", "chest pain"),
        ("no fever, no cough, chest pain not going away", "chest pain"),
        ("no fever, no vomiting, headache won't stop, not eating", "headache"),
        ("没有发烧，没有咳嗽，胸痛一直不停", "胸痛"),
        ("没有发烧，没有咳嗽，我的胸痛不放射", "胸痛"),
    ],
)
def test_findings_reported_now_count(text: str, finding: str) -> None:
    assert not flags_of(text, finding) & SUPPRESSING


def test_possible_is_recorded_but_never_suppresses() -> None:
    flags = flags_of("I might be having a heart attack", "heart attack")
    assert Flag.POSSIBLE in flags and not flags & SUPPRESSING


@pytest.mark.parametrize(
    ("text", "general"),
    [
        ("What are the signs of a stroke?", True),
        ("how do you treat a burn?", True),
        ("face drooping for 10 minutes now, what does that mean?", False),
        ("what does it mean if my arm goes numb?", False),
        ("中风有什么症状？", True),
        ("我爸现在说话不清楚，这是什么症状？", False),
    ],
)
def test_general_questions_are_told_from_reports(text: str, general: bool) -> None:
    assert is_general_question(text) is general


def test_a_long_message_stops_analysing_at_its_budget_and_counts_the_rest() -> None:
    # Past the budget a finding counts (the safe side); the cost stays bounded.
    # Distinct in their words: sentences that differ only in numbers share one analysis.
    names = [chr(97 + i // 26) + chr(97 + i % 26) for i in range(ClinicalContext.MAX_WINDOWS + 10)]
    sentences = [f"no chest pain for {name}." for name in names]
    text = " ".join(sentences)
    spans = [m.span() for m in re.finditer("chest pain", text)]
    flags = CONTEXT.flags(text, spans)
    assert all(Flag.NEGATED in f for f in flags[: ClinicalContext.MAX_WINDOWS])
    assert not flags[-1] & SUPPRESSING


def test_sentences_that_differ_only_in_numbers_share_one_analysis() -> None:
    sentences = [f"no chest pain on day {i}." for i in range(ClinicalContext.MAX_WINDOWS + 10)]
    text = " ".join(sentences)
    spans = [m.span() for m in re.finditer("chest pain", text)]
    assert all(Flag.NEGATED in f for f in CONTEXT.flags(text, spans))


def test_clause_flags_see_every_cue_touching_the_clause() -> None:
    text = "I don't have pain in my chest, my knee hurts"
    first = (0, text.index(","))
    second = (text.index("my knee"), len(text))
    negated, plain = CONTEXT.clause_flags(text, [first, second])
    assert Flag.NEGATED in negated and not plain & SUPPRESSING
