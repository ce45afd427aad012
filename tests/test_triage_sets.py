"""Triage measured on whole case sets: the team's dialogue dev set and the public screens.

The acceptance figures of the triage rebuild, kept as tests so no change can quietly undo them:
- the dev set (tests/data/triage_dev_dialogues.jsonl, written by the team from NHS/NICE pages
  before the rules changed): every emergency found, none settled below urgent;
- ../shared/data/triage/avey400.jsonl: lists of findings a patient does not have fire no
  emergency;
- ../shared/data/triage/semigran45.jsonl: 15/15 emergencies, at least 85% exact, none
  under-triaged by two levels.
Public files are read where they are (skipped when the checkout has no ../shared/data).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.models import TriageLevel
from bot.triage.evaluate import EvalReport, converse, evaluate, load_cases
from bot.triage.semantic import SemanticMatcher
from bot.triage.service import TriageService
from rag.embeddings import MiniLMEmbeddings

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT / "tests" / "data" / "triage_dev_dialogues.jsonl"
# Written afterwards, by writers who saw neither the rules nor the first set; frozen before
# any tuning (docs/triage.md).
DEV2 = ROOT / "tests" / "data" / "triage_dev2_dialogues.jsonl"
SHARED = ROOT.parent / "shared" / "data" / "triage"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="no ../shared/data here")


@pytest.fixture(scope="module")
def service(triage_rules, minilm: MiniLMEmbeddings) -> TriageService:  # type: ignore[no-untyped-def]
    semantic = SemanticMatcher(triage_rules, minilm)
    return TriageService(triage_rules, semantic=semantic)


async def run(service: TriageService, path: Path, unmentioned: str) -> EvalReport:
    cases = load_cases(path)

    async def assess(case):  # type: ignore[no-untyped-def]
        language = case.language or "en"
        return await converse(service, case, language, 2, unmentioned)

    return await evaluate(cases, assess)


async def test_dev_set_finds_every_emergency(service: TriageService) -> None:
    report = await run(service, DEV, "unsure")
    assert report.cases >= 120
    missed = [
        r.case_id
        for r in report.results
        if TriageLevel.EMERGENCY in r.expected and r.predicted is not TriageLevel.EMERGENCY
    ]
    assert missed == [] and report.emergency_below_urgent == 0
    assert report.questions_max <= 6  # two rounds of three at most


async def test_dev_set_2_holds_its_measured_figures(service: TriageService) -> None:
    # The figures of docs/triage.md, kept so no change quietly undoes them. They are below
    # the bar (96% of emergencies, none below urgent): see "Known limits".
    report = await run(service, DEV2, "unsure")
    assert report.cases == 150
    assert report.emergency_found >= 39 and report.emergency_below_urgent <= 2
    assert report.per_level_recall["urgent"].recall >= 0.70
    assert report.questions_max <= 6


def test_dev_set_2_is_well_formed() -> None:
    from bot.triage.interview import Catalogue

    questions = set(Catalogue.load().questions)
    rows = [json.loads(line) for line in DEV2.read_text(encoding="utf-8").splitlines() if line]
    assert len({r["id"] for r in rows}) == len(rows) == 150
    assert {r["expected"] for r in rows} == {"emergency", "urgent", "routine", "self_care"}
    for row in rows:
        assert set(row["facts"]) <= questions, row["id"]
        assert row["opening"].strip() and row["source"].strip(), row["id"]


def test_dev_set_is_well_formed() -> None:
    rows = [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines() if line]
    assert len({r["id"] for r in rows}) == len(rows) >= 120
    assert {r["language"] for r in rows} == {"en", "zh"}
    levels = {
        r["expected"] if isinstance(r["expected"], str) else "|".join(r["expected"]) for r in rows
    }
    assert {"emergency", "urgent", "routine", "self_care"} <= levels


@needs_shared
def test_denied_findings_of_avey400_fire_no_urgent_or_emergency_finding(
    service: TriageService,
) -> None:
    rows = [json.loads(line) for line in (SHARED / "avey400.jsonl").read_text().splitlines()]
    fired = {}
    for number, row in enumerate(rows, start=1):
        result = service.decide([row["absent_findings"]], ask=False)
        serious = [h.rule_id for h in result.hits if h.level.rank >= TriageLevel.URGENT.rank]
        if serious:
            fired[number] = tuple(serious)
    assert fired == {}


@needs_shared
async def test_semigran_vignettes(service: TriageService) -> None:
    report = await run(service, SHARED / "semigran45.jsonl", "absent")
    assert report.emergency_found == report.emergency_total == 15
    assert report.exact_accuracy >= 0.85 and report.under_triage_2plus == 0
