"""Guideline pages' "when to get help" statements as triage criteria (bot/triage/criteria.py).

Each page's bullets under "See a doctor if", "Get urgent help today if" and "Call emergency
services if" are its criteria, with the patients' wordings in its front matter. Messages are
written for these tests; none comes from an evaluation set.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest
import yaml

from bot.models import TriageLevel
from bot.triage.criteria import BUNDLED_PAGES, CriteriaBook
from bot.triage.rules import TriageRules
from bot.triage.semantic import SemanticMatcher
from bot.triage.service import TriageService
from rag.embeddings import MiniLMEmbeddings

EXTRA = Path(__file__).parent / "data" / "guideline_extra"
SECTIONS = {
    "See a doctor if": TriageLevel.ROUTINE,
    "Get urgent help today if": TriageLevel.URGENT,
    "Call emergency services if": TriageLevel.EMERGENCY,
    "以下情况请看医生": TriageLevel.ROUTINE,
    "以下情况请今天就医": TriageLevel.URGENT,
    "以下情况请立即拨打急救电话": TriageLevel.EMERGENCY,
}
HICCUPS = "I'm 40 and my hiccups have not stopped for three whole days, what can I do?"


def help_bullets(page: Path) -> dict[str, TriageLevel]:
    """The bullets of a page's three help sections, each with its section's level."""
    body = page.read_text(encoding="utf-8").split("\n---\n", 1)[1]
    bullets: dict[str, TriageLevel] = {}
    level = None
    for line in body.splitlines():
        if line.startswith("## "):
            level = SECTIONS.get(line[3:].strip())
        elif level is not None and line.startswith("- "):
            bullets[line[2:].strip().rstrip(";.。；")] = level
    return bullets


@pytest.fixture(scope="module")
def with_extra_page(minilm: MiniLMEmbeddings) -> TriageService:
    rules = TriageRules(criteria=CriteriaBook.load([BUNDLED_PAGES, EXTRA]))
    return TriageService(rules, semantic=SemanticMatcher(rules, minilm))


@pytest.fixture(scope="module")
def shipped(triage_rules: TriageRules, minilm: MiniLMEmbeddings) -> TriageService:
    return TriageService(triage_rules, semantic=SemanticMatcher(triage_rules, minilm))


def test_every_bundled_page_carries_its_criteria_one_per_help_bullet() -> None:
    book = CriteriaBook.load()
    pages = sorted(BUNDLED_PAGES.glob("*.md"))
    assert len(pages) >= 50
    by_page: dict[str, dict[str, TriageLevel]] = {}
    for criterion in book.criteria:
        by_page.setdefault(criterion.page, {})[criterion.spec.finding.rstrip(";.。；")] = (
            criterion.spec.level
        )
        assert re.match(r"https?://", criterion.spec.source), criterion.rule_id
        assert len(criterion.spec.says) >= 5, criterion.rule_id
    for page in pages:
        # Authored once: the bullets a patient reads are the criteria triage reads.
        assert by_page.get(page.stem) == help_bullets(page), page.name
    levels = {c.spec.level for c in book.criteria}
    assert levels == {TriageLevel.EMERGENCY, TriageLevel.URGENT, TriageLevel.ROUTINE}


def test_a_new_page_with_a_new_criterion_changes_the_level_and_is_cited(
    shipped: TriageService, with_extra_page: TriageService
) -> None:
    before = shipped.decide([HICCUPS])
    after = with_extra_page.decide([HICCUPS])
    assert before.level is TriageLevel.ROUTINE
    assert after.level is TriageLevel.URGENT
    (hit,) = [h for h in after.hits if h.level is TriageLevel.URGENT]
    assert hit.rule_id == "hiccups/hiccups-over-two-days"
    assert hit.citation == "Hiccups (https://www.nhs.uk/conditions/hiccups/)"
    assert "Hiccups guide" in hit.explanation
    (evidence,) = hit.evidence
    assert evidence.source == "guideline" and evidence.similarity is not None
    assert "hiccups" in evidence.text


@pytest.mark.parametrize(
    "text",
    [
        "I had hiccups for ten minutes after dinner",  # its own near miss
        "no hiccups for days, thankfully",  # denied
        "my brother had hiccups for three days last year",  # someone else, in the past
    ],
)
def test_near_misses_denials_and_other_peoples_stories_do_not_fire_it(
    with_extra_page: TriageService, text: str
) -> None:
    result = with_extra_page.decide([text])
    assert "hiccups/hiccups-over-two-days" not in {h.rule_id for h in result.hits}


def test_each_criterion_has_a_recorded_threshold(with_extra_page: TriageService) -> None:
    semantic = with_extra_page.semantic
    assert semantic is not None
    semantic.warm_up()
    rules = with_extra_page.rules
    english = [c for c in rules.criteria.values() if c.language == "en"]
    assert {c.rule_id for c in english} <= set(semantic.calibration)
    for calibration in semantic.calibration.values():
        assert calibration.threshold >= SemanticMatcher.CRITERION_FLOOR
        # Placed above the closest near miss that would be read as it.
        assert calibration.threshold > calibration.closest_near_miss
        assert 0.0 <= calibration.recall <= 1.0


def test_a_broken_page_is_skipped_and_the_rest_still_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.copy(EXTRA / "hiccups.md", tmp_path / "hiccups.md")
    raw = (EXTRA / "hiccups.md").read_text(encoding="utf-8")
    front = yaml.safe_load(raw.split("---\n")[1])
    front["criteria"][0]["level"] = "whenever"
    broken = "---\n" + yaml.safe_dump(front) + "---\n# Broken\n"
    (tmp_path / "broken.md").write_text(broken, encoding="utf-8")
    (tmp_path / "binary.md").write_bytes(b"---\n\xff\xfe\x00 not yaml\n---\n")
    with caplog.at_level(logging.WARNING):
        book = CriteriaBook.load([tmp_path])
    assert [c.rule_id for c in book.criteria] == ["hiccups/hiccups-over-two-days"]
    assert "broken.md" in caplog.text and "binary.md" in caplog.text


def test_without_an_embedding_model_the_rules_stand_alone() -> None:
    rules = TriageRules(criteria=CriteriaBook.load([EXTRA]))
    result = TriageService(rules).decide([HICCUPS])
    assert result.level is TriageLevel.ROUTINE
