"""The failure patterns of the triage rebuild, in the team's own wording (English and Chinese).

Each group is a mechanism found failing on patient-written text: lay wording, a harmless word
deciding the level, negation and context, general questions hiding a report, and cost. None of
these sentences comes from an evaluation set; they are written from NHS patient pages.
"""

from __future__ import annotations

import pytest

from bot.models import TriageLevel
from bot.triage.lexicon import Lexicon
from bot.triage.rules import TriageRules
from bot.triage.service import TriageService

RULES = TriageRules()
SERVICE = TriageService(RULES)


def decide(text: str, language: str = "en") -> tuple[TriageLevel, set[str]]:
    result = SERVICE.decide([text], language, ask=False)
    return result.rule_level, {h.rule_id for h in result.hits}


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("my nan's mouth has gone all lopsided and she's slurring", "EM-STROKE-FAST"),
        ("dads talking gibberish and cant lift his right arm", "EM-STROKE-FAST"),
        ("been feeling dizzy and my poo has gone black and sticky", "EM-SEVERE-BLEEDING"),
        (
            "my 2 year old just swallowed one of those little round batteries",
            "EM-POISONING-OVERDOSE",
        ),
        ("I necked a whole packet of paracetamol an hour ago", "EM-POISONING-OVERDOSE"),
        ("ive got the pills lined up and im going to take them tonight", "EM-SELF-HARM"),
        ("my 6 week old is burning up, thermometer says 38.5", "EM-INFANT-FEVER"),
        ("my 18 month old has gone all floppy and limp", "EM-CHILD-RED-FEATURES"),
        ("我奶奶嘴歪了，说话也含糊不清", "EM-STROKE-FAST"),
        ("拉的大便是黑的，像柏油一样", "EM-SEVERE-BLEEDING"),
        ("孩子把一颗纽扣电池吞下去了", "EM-POISONING-OVERDOSE"),
        ("我把一整板安眠药都吃了", "EM-POISONING-OVERDOSE"),
    ],
)
def test_lay_wording_is_recognised(text: str, rule: str) -> None:
    level, rules = decide(text, "zh" if any("\u4e00" <= c <= "\u9fff" for c in text) else "en")
    assert rule in rules and level is TriageLevel.EMERGENCY


@pytest.mark.parametrize(
    "text",
    [
        "after eating prawns my lips blew up and my throat feels tight",
        "came out in a cold sweat and my chest feels really heavy",
        "wasp got me on the hand, now my tongue feels fat and I sound hoarse",
        "被蜜蜂蛰了以后舌头肿起来了，喉咙发紧",
    ],
)
def test_a_harmless_word_never_decides_the_level(text: str) -> None:
    level, _ = decide(text)
    assert level is TriageLevel.EMERGENCY


@pytest.mark.parametrize(
    ("text", "sense"),
    [
        ("I keep getting cold sweats at night", "SC-COLD-AND-COUGH"),
        ("my hands are cold all the time", "SC-COLD-AND-COUGH"),
    ],
)
def test_word_senses_keep_a_word_out_of_the_wrong_finding(text: str, sense: str) -> None:
    _, rules = decide(text)
    assert sense not in rules


@pytest.mark.parametrize(
    "text",
    [
        "the cough doesn't keep me awake at night",
        "I had fits as a teenager, now it's just a cold",
        "no chest pain, no breathlessness, no fainting, no sweating",
        "my grandmother died of a stroke, I'm asking for myself: sore throat",
        "if my baby ever stops breathing what do I do? she is fine, just teething",
        "我小时候抽过筋，现在只是感冒",
        "没有胸痛，没有呼吸困难，只是流鼻涕",
    ],
)
def test_denied_past_hypothetical_and_others_findings_are_not_emergencies(text: str) -> None:
    level, rules = decide(text)
    assert level.rank < TriageLevel.URGENT.rank, rules


@pytest.mark.parametrize(
    "text",
    [
        "what does it mean when one side of your face droops? my husband's is doing it now",
        "is 20 ibuprofen dangerous? my son just took them",
        "how do you know if it's a heart attack, crushing pain in my chest for 20 minutes",
        "吃了一整瓶安眠药会怎么样？我刚吃完",
    ],
)
def test_a_question_never_hides_what_is_happening_now(text: str) -> None:
    result = SERVICE.decide([text], ask=False)
    assert result.level is TriageLevel.EMERGENCY and not result.general


def test_a_real_general_question_is_answered_as_one() -> None:
    result = SERVICE.decide(["What are the warning signs of sepsis in adults?"])
    assert result.general and result.level is not TriageLevel.EMERGENCY
    assert result.questions == []


def test_a_red_flag_at_the_end_of_a_200000_character_message_is_found() -> None:
    filler = "Work has been busy and I sleep badly. My knee is a little stiff. " * 3100
    text = filler[:199_950] + " now my face has dropped on one side"
    level, rules = decide(text)
    assert level is TriageLevel.EMERGENCY and "EM-STROKE-FAST" in rules


def test_one_long_word_is_read_and_a_typo_next_to_it_still_corrected() -> None:
    level, rules = decide("a" * 4096 + " chset pain and sweating")
    assert "EM-CARDIAC-CHEST-PAIN" in rules and level is TriageLevel.EMERGENCY


@pytest.mark.parametrize(
    "messages",
    [
        [""],
        ["   \n\t "],
        ["\x00\x01\x02 \ufffd\ufffd binary \x7f"],
        ["🙂" * 5000],
        ["؟ألم في الصدر", "Боль в груди"],  # languages CareBot does not read: no crash, no level
        ["a" * 200_000, ""],
    ],
)
def test_empty_binary_and_foreign_input_gets_a_calm_default(messages: list[str]) -> None:
    result = SERVICE.decide(messages)
    assert result.level is TriageLevel.ROUTINE and result.hits == []
    assert len(result.questions) <= SERVICE.questions_per_round  # general screens, never a crash


def test_every_lexicon_finding_cites_sources_and_has_exemplars_in_both_languages() -> None:
    lexicon = Lexicon.load()
    for name, finding in lexicon.findings.items():
        assert finding.sources, name
        assert finding.lay.get("en") and finding.lay.get("zh"), name
        assert len(finding.exemplars.get("en", [])) >= 5, name
        assert len(finding.exemplars.get("zh", [])) >= 5, name
        assert finding.implies in RULES.ids, name


def test_every_exemplar_is_recognised_by_its_own_finding() -> None:
    # The exemplars are the team's reference sentences: the patterns must read them too.
    for name, finding in RULES.lexicon.findings.items():
        for language, sentences in finding.exemplars.items():
            for sentence in sentences:
                found = RULES.findings([sentence])
                assert found.present, (name, language, sentence)
