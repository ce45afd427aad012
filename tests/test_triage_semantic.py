"""Matching red flags by meaning with the packaged MiniLM, under the same ConText rules.

Sentences are written for these tests. They run the real model, in this CPU's precision and
in the other one (bfloat16 and float32 must decide alike: a decision must not hinge on the
last digits of a CPU's arithmetic).
"""

from __future__ import annotations

import pytest

from bot.models import TriageLevel
from bot.triage.rules import TriageRules
from bot.triage.semantic import SemanticMatcher
from bot.triage.service import TriageService
from rag.embeddings import MiniLMEmbeddings

# Lay wording none of the lexicon's patterns holds; the meaning is a red flag.
UNSEEN = [("her lips have gone a dusky blue", "EM-CANNOT-BREATHE")]
CALM = [
    "I have had a runny nose and a bit of a sore throat since Monday",
    "my knee clicks when I go up the stairs",
    "I don't have any pain going into my jaw or arm, just a stiff shoulder",
    "what does a stroke look like in an older person?",
]


@pytest.fixture(scope="module")
def matcher(triage_rules: TriageRules, minilm: MiniLMEmbeddings) -> SemanticMatcher:
    matcher = SemanticMatcher(triage_rules, minilm)
    matcher.warm_up()
    return matcher


@pytest.mark.parametrize(("text", "rule"), UNSEEN)
def test_unseen_lay_wording_is_found_by_meaning(
    triage_rules: TriageRules, matcher: SemanticMatcher, text: str, rule: str
) -> None:
    words_only = TriageService(triage_rules).decide([text], ask=False)
    assert rule not in {h.rule_id for h in words_only.hits}  # the patterns alone miss it
    result = TriageService(triage_rules, semantic=matcher).decide([text], ask=False)
    assert result.level is TriageLevel.EMERGENCY
    # Found by meaning: through the lexicon's exemplars of the rule, or a guideline page's
    # criterion at the same level (the nearest exemplar wins), with its page cited.
    (hit,) = [h for h in result.hits if h.level is TriageLevel.EMERGENCY]
    (evidence,) = [e for e in hit.evidence if e.source in ("semantic", "guideline")]
    assert evidence.exemplar and evidence.similarity is not None
    assert evidence.similarity >= matcher.threshold
    assert hit.rule_id == rule or hit.citation is not None


@pytest.mark.parametrize("text", CALM)
def test_ordinary_and_denied_wording_adds_nothing(matcher: SemanticMatcher, text: str) -> None:
    assert matcher.find([text]) == []


def test_chinese_is_left_to_the_patterns_with_an_english_model(matcher: SemanticMatcher) -> None:
    # The packaged model has almost no Chinese vocabulary: every Chinese sentence looks alike.
    assert matcher.languages == {False}
    assert matcher.find(["我今天有点流鼻涕，嗓子也有点疼"]) == []


def test_a_pasted_record_is_left_to_the_patterns(matcher: SemanticMatcher) -> None:
    text = UNSEEN[0][0] + ". " + "Nothing else to report today. " * 200
    assert len(text) > matcher.max_chars and matcher.find([text]) == []


def test_float32_and_bfloat16_decide_alike(
    triage_rules: TriageRules, minilm: MiniLMEmbeddings
) -> None:
    other = MiniLMEmbeddings(precision="fp32" if minilm.bf16 else "bf16")
    found = []
    for embedder in (minilm, other):
        matcher = SemanticMatcher(triage_rules, embedder)
        found.append(
            [sorted(e.finding for e in matcher.find([t])) for t, _ in UNSEEN]
            + [sorted(e.finding for e in matcher.find([t])) for t in CALM]
        )
    assert found[0] == found[1]
