"""Free-text answers read against the question asked, and "not sure" is not "no".

A patient asked a red-flag screen answers in their own words: a description of the screened
danger is a yes whatever words it uses (even after "not sure"), a reassuring description is a
no, and an answer about something else says nothing to the screen. A screen the patient would
know ("is it hard to breathe?") answered "not sure" is asked once more in simpler words; a
complaint's main danger left "not sure" keeps the level at urgent, with the reason.
Messages are written for these tests; none comes from an evaluation set.
"""

from __future__ import annotations

import pytest

from bot.models import TriageLevel
from bot.triage.interview import AGAIN, Answer
from bot.triage.rules import TriageRules
from bot.triage.semantic import SemanticMatcher
from bot.triage.service import NOT_RULED_OUT, PatientMessage, TriageResult, TriageService
from rag.embeddings import MiniLMEmbeddings

SORE_THROAT = "I am 30 and have had a sore throat for two days, what can I do?"


@pytest.fixture(scope="module")
def service(triage_rules: TriageRules, minilm: MiniLMEmbeddings) -> TriageService:
    return TriageService(triage_rules, semantic=SemanticMatcher(triage_rules, minilm))


def answer(service: TriageService, opening: str, reply: str) -> TriageResult:
    """The decision after one round: the bot's questions, then the patient's reply."""
    asked = service.decide([opening]).questions
    assert asked, "the bot asked nothing"
    return service.decide([PatientMessage(text=opening), PatientMessage(text=reply, asked=asked)])


def reply_to(service: TriageService, opening: str, qid: str, said: str) -> TriageResult:
    """The decision after the patient answers one screen in their own words."""
    return service.decide([PatientMessage(text=opening), PatientMessage(text=said, asked=[qid])])


def test_an_answer_about_something_else_is_not_a_yes(service: TriageService) -> None:
    # Asked breathing, fluids and temperature at once, the patient says how the throat is.
    result = answer(service, SORE_THROAT, "It is mild")
    assert result.level is not TriageLevel.EMERGENCY
    assert result.screens.get("rf_breathing") is not Answer.YES
    assert not [h for h in result.hits if h.level is TriageLevel.EMERGENCY]


@pytest.mark.parametrize(
    "said",
    [
        "my husband says the words won't come out right when I talk",
        "not sure, but she went blank for a minute and didn't answer me",
        "she's awake but half of what she says makes no sense at all",
        "he keeps dozing off halfway through a sentence",
    ],
)
def test_consciousness_described_sideways_is_a_yes(service: TriageService, said: str) -> None:
    result = reply_to(service, "My mum (82) has a urine infection", "rf_consciousness", said)
    assert result.screens["rf_consciousness"] is Answer.YES
    assert result.level is TriageLevel.EMERGENCY
    evidence = [e for h in result.hits for e in h.evidence if e.source == "answer"]
    assert evidence and evidence[0].message == 1


@pytest.mark.parametrize(
    ("qid", "said"),
    [
        ("rf_consciousness", "no, she's chatting away like normal"),
        ("rf_head_injury", "She hasn't been sick and hasn't blacked out at all"),
        ("rf_breathing", "I'm breathing fine, just a bit bunged up"),
        ("rf_abdomen_severe", "more of a dull ache than anything, tummy is soft"),
        ("rf_meningitis", "her neck moves fine and the lights don't bother her"),
    ],
)
def test_a_reassuring_description_is_a_no(service: TriageService, qid: str, said: str) -> None:
    result = reply_to(service, "My daughter (7) fell off her bike and has a cold", qid, said)
    assert result.screens[qid] is Answer.NO
    assert result.level is not TriageLevel.EMERGENCY


def test_a_paragraph_answering_the_whole_round_is_read_screen_by_screen(
    service: TriageService,
) -> None:
    opening = "my dad (79) has had a chest infection for a few days"
    asked = ["rf_breathing", "rf_consciousness", "rf_chest_pain"]
    paragraph = (
        "His breathing is about the same as yesterday. Today though he's not making any sense "
        "and he keeps drifting off while I'm talking to him"
    )
    result = service.decide(
        [PatientMessage(text=opening), PatientMessage(text=paragraph, asked=asked)]
    )
    assert result.screens.get("rf_consciousness") is Answer.YES
    assert result.level is TriageLevel.EMERGENCY


def test_not_sure_to_a_screen_the_patient_would_know_is_asked_again_more_simply(
    service: TriageService,
) -> None:
    opening = "I've had a chesty cough for a week"
    first = service.decide([opening])
    assert "rf_breathing" in first.questions
    reply = "\n".join("not sure" for _ in first.questions)
    second = service.decide(
        [PatientMessage(text=opening), PatientMessage(text=reply, asked=first.questions)]
    )
    assert second.questions[0] == f"rf_breathing{AGAIN}"
    again = service.interview.question(f"rf_breathing{AGAIN}").text["en"]
    assert again.startswith("Right now, is it hard to breathe?")
    # A yes to the simpler question counts as the yes to the screen.
    third = service.decide(
        [
            PatientMessage(text=opening),
            PatientMessage(text=reply, asked=first.questions),
            PatientMessage(text="yes", asked=[f"rf_breathing{AGAIN}"]),
        ]
    )
    assert third.screens["rf_breathing"] is Answer.YES
    assert third.level is TriageLevel.EMERGENCY


def test_a_main_danger_left_not_sure_keeps_the_level_at_urgent_with_the_reason(
    service: TriageService,
) -> None:
    opening = "I'm 45, my back has been sore since I moved a wardrobe on Saturday"
    conversation = [PatientMessage(text=opening)]
    for _ in range(2):
        asked = service.decide(conversation).questions
        conversation.append(PatientMessage(text="\n".join("dunno" for _ in asked), asked=asked))
    result = service.decide(conversation, ask=False)
    assert result.screens.get("rf_cauda_equina") is Answer.UNSURE
    assert result.level is TriageLevel.URGENT
    (floor,) = [h for h in result.hits if h.rule_id == NOT_RULED_OUT]
    assert "could not rule out" in floor.explanation
    assert [e.finding for e in floor.evidence] == ["rf_cauda_equina"]
    # The same patient answering "no" to the screen is not held at urgent.
    calm = [PatientMessage(text=opening)]
    for _ in range(2):
        asked = service.decide(calm).questions
        calm.append(PatientMessage(text="\n".join("no" for _ in asked), asked=asked))
    assert NOT_RULED_OUT not in {h.rule_id for h in service.decide(calm, ask=False).hits}


def test_without_a_sentence_model_a_description_of_the_danger_is_still_a_yes(
    triage_rules: TriageRules,
) -> None:
    words_only = TriageService(triage_rules)
    opening = "my son (6) banged his head on the climbing frame"
    result = reply_to(
        words_only, opening, "rf_head_injury", "he's been sick twice since and is very drowsy"
    )
    assert result.level is TriageLevel.EMERGENCY
    off_topic = reply_to(words_only, SORE_THROAT, "rf_breathing", "It is mild")
    assert off_topic.screens["rf_breathing"] is Answer.UNSURE


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "\x00\x01 \ufffd binary junk " * 50,
        "we went to the shops and then the park. " * 5_000,  # 200,000 characters
    ],
)
def test_empty_binary_or_huge_replies_answer_nothing_and_raise_nothing(
    service: TriageService, reply: str
) -> None:
    asked = ["rf_consciousness", "rf_sepsis", "rf_breathing"]
    result = service.decide(
        [
            PatientMessage(text="my mum has a urine infection"),
            PatientMessage(text=reply, asked=asked),
        ]
    )
    assert result.level is not TriageLevel.EMERGENCY
    assert not [a for a in result.screens.values() if a is Answer.YES]


def test_a_chinese_description_answers_the_screen(service: TriageService) -> None:
    result = service.decide(
        [
            PatientMessage(text="我妈妈尿路感染了"),
            PatientMessage(text="她有点糊涂，说话前言不搭后语", asked=["rf_consciousness"]),
        ],
        "zh",
    )
    assert result.screens["rf_consciousness"] is Answer.YES
    assert result.level is TriageLevel.EMERGENCY
