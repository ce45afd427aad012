"""Behavioural tests of triage, generated from the lexicon (CheckList, Ribeiro et al. 2020).

Every red-flag finding gets minimum-functionality, invariance and directional tests
(bot/triage/behaviour.py, templates in behaviour.yaml); all must pass. The counts are in
docs/triage.md (`carebot eval behaviour`).
"""

from __future__ import annotations

import pytest

from bot.models import TriageLevel
from bot.triage import behaviour
from bot.triage.rules import TriageRules
from bot.triage.semantic import SemanticMatcher
from bot.triage.service import TriageService
from rag.embeddings import MiniLMEmbeddings


@pytest.fixture(scope="module")
def service(triage_rules: TriageRules, minilm: MiniLMEmbeddings) -> TriageService:
    return TriageService(triage_rules, semantic=SemanticMatcher(triage_rules, minilm))


def test_every_finding_has_minimum_invariance_and_directional_tests(
    service: TriageService,
) -> None:
    assert behaviour.missing_phrases(service) == []
    cases = behaviour.generate(service)
    for name in service.rules.lexicon.findings:
        kinds = {c.kind for c in cases if c.finding == name}
        assert kinds == {"MFT", "INV", "DIR"}, name
        templates = {c.template for c in cases if c.finding == name}
        assert {"story", "relative", "hedge", "question", "capitals", "typo"} <= templates
        assert {"adds", "denied", "past", "family", "hypothetical"} <= templates


def test_the_behavioural_suite_has_no_failures(service: TriageService) -> None:
    report = behaviour.run(service)
    assert report.total >= 1500
    failed = [
        f"{case.kind} {case.template} {case.finding}: {level.value} ({case.text[-80:]!r})"
        for case, level in report.failures
    ]
    assert failed == []


def test_the_generated_cases_can_fail(service: TriageService) -> None:
    # A suite that cannot fail proves nothing: a service that reads no words at all (a
    # rules file with its findings emptied is too slow to build here, so the check is run
    # against a decision that ignores the text) fails the minimum-functionality tests.
    cases = behaviour.generate(service)
    routine = TriageLevel.ROUTINE
    assert any(not c.check(routine) for c in cases if c.kind == "MFT")
    assert all(c.check(TriageLevel.SELF_CARE) for c in cases if c.template == "denied")


def test_third_person_and_typo_transformations() -> None:
    assert behaviour.third_person("I wish I could disappear") == "she wishes she could disappear"
    assert behaviour.third_person("my chest hurts and I'm scared") == (
        "her chest hurts and she's scared"
    )
    typo = behaviour.with_typo("my daughter took antidepressants")
    assert typo != "my daughter took antidepressants" and len(typo) == len(
        "my daughter took antidepressants"
    )
