"""Triage evaluation: load labelled cases, score an assessor, report without case text."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from bot.models import TriageLevel
from bot.triage.evaluate import (
    EvalCase,
    EvalReport,
    Prediction,
    evaluate,
    format_table,
    load_cases,
)

EM, UR, RO, SC = (
    TriageLevel.EMERGENCY,
    TriageLevel.URGENT,
    TriageLevel.ROUTINE,
    TriageLevel.SELF_CARE,
)
SEMIGRAN45 = Path("/work/shared/data/triage/semigran45.jsonl")

# Invented cases: (text, expected, what the fake assessor answers, its rules).
SCRIPT = [
    ("purple toes after the marathon", [EM], EM, ["EM-FAKE-1"]),
    ("my kettle hums when I cough", [EM], RO, []),
    ("a wobbly tooth since the picnic", [UR, RO], SC, []),
    ("itchy ears every second tuesday", [UR, RO], UR, ["UR-FAKE"]),
    ("a paper cut on my thumb", [SC], UR, ["UR-FAKE"]),
    ("sore calves after gardening", [SC], SC, []),
    ("hiccups for an afternoon", [UR, RO], EM, ["EM-FAKE-2"]),
]


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def script_cases() -> list[EvalCase]:
    return [
        EvalCase(case_id=f"c{i}", text=text, expected=expected)
        for i, (text, expected, _, _) in enumerate(SCRIPT, start=1)
    ]


async def scripted_assess(case: EvalCase) -> Prediction:
    answers = {t: Prediction(level=level, rules=rules) for t, _, level, rules in SCRIPT}
    return answers[case.text]


async def scripted_report() -> EvalReport:
    return await evaluate(script_cases(), scripted_assess, mode="rules")


def test_generic_format_parses_ids_and_expected_lists(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "generic.jsonl",
        json.dumps({"id": "chest-1", "text": "tight chest on the stairs", "expected": "urgent"}),
        "",
        "   ",
        json.dumps({"text": "a mild rash", "expected": ["routine", "self_care"]}),
        json.dumps({"id": 7, "text": "sneezing", "expected": ["self_care"]}),
    )

    cases = load_cases(path)

    assert [c.case_id for c in cases] == ["chest-1", "line 4", "7"]
    assert [c.expected for c in cases] == [[UR], [RO, SC], [SC]]
    assert cases[1].text == "a mild rash"


def test_semigran_format_maps_urgency_codes(tmp_path: Path) -> None:
    row = {"correct_diagnosis": "invented"}
    path = write_lines(
        tmp_path / "semi.jsonl",
        json.dumps({**row, "urgency_level": "em", "case_description": "collapsed at work"}),
        json.dumps({**row, "urgency_level": "ne", "case_description": "ankle swollen"}),
        "",
        json.dumps({**row, "urgency_level": "sc", "case_description": "runny nose"}),
    )

    cases = load_cases(path)

    assert [c.case_id for c in cases] == ["line 1", "line 2", "line 4"]
    assert [c.expected for c in cases] == [[EM], [UR, RO], [SC]]
    assert [c.label for c in cases] == ["emergency", "urgent|routine", "self_care"]


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ('{"text": "cough", "expected": ', "invalid JSON"),
        ('{"expected": "urgent"}', "missing text"),
        ('{"text": "cough"}', "missing expected"),
        ('{"text": "cough", "expected": []}', "expected is empty"),
        ('{"text": "cough", "expected": "soonish"}', "unknown level 'soonish'"),
        ('{"case_description": "cough", "urgency_level": "xx"}', "unknown level 'xx'"),
        ('["cough", "urgent"]', "expected a JSON object"),
    ],
)
def test_malformed_line_names_file_line_and_problem(
    tmp_path: Path, bad_line: str, problem: str
) -> None:
    path = write_lines(
        tmp_path / "semi.jsonl",
        json.dumps({"text": "fine line", "expected": "routine"}),
        "",
        bad_line,
    )

    with pytest.raises(ValueError) as raised:
        load_cases(path)
    assert str(raised.value).startswith("semi.jsonl line 3: ")
    assert problem in str(raised.value)


def test_file_with_only_blank_lines_has_no_cases(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "empty.jsonl", "", "  ")
    with pytest.raises(ValueError, match="no cases"):
        load_cases(path)


async def test_metrics_match_hand_counts() -> None:
    report = await scripted_report()

    assert report.mode == "rules"
    assert report.cases == 7
    assert report.correct == 3
    assert report.exact_accuracy == pytest.approx(3 / 7)
    assert (report.emergency_found, report.emergency_total) == (1, 2)
    assert report.emergency_recall == pytest.approx(0.5)
    assert report.under_triage_rate == pytest.approx(2 / 7)
    assert report.under_triage_2plus == 1
    assert report.over_triage_rate == pytest.approx(2 / 7)
    assert report.self_care_over_triage == pytest.approx(0.5)
    assert {k: (v.total, v.correct) for k, v in report.per_level_recall.items()} == {
        "emergency": (2, 1),
        "urgent|routine": (3, 1),
        "self_care": (2, 1),
    }
    assert report.per_level_recall["urgent|routine"].recall == pytest.approx(1 / 3)
    assert report.confusion == {
        "emergency": {"emergency": 1, "urgent": 0, "routine": 1, "self_care": 0},
        "urgent|routine": {"emergency": 1, "urgent": 1, "routine": 0, "self_care": 1},
        "self_care": {"emergency": 0, "urgent": 1, "routine": 0, "self_care": 1},
    }


async def test_per_case_results_carry_signed_error_and_rules() -> None:
    report = await scripted_report()

    assert [r.case_id for r in report.results] == [f"c{i}" for i in range(1, 8)]
    assert [r.error for r in report.results] == [0, -2, -1, 0, 2, 0, 1]
    assert [r.correct for r in report.results] == [True, False, False, True, False, True, False]
    assert report.results[6].rules == ["EM-FAKE-2"]
    assert report.results[2].expected == [UR, RO]
    assert all(r.latency_ms >= 0 for r in report.results)
    assert report.latency_ms.max >= report.latency_ms.p95 >= report.latency_ms.p50 >= 0


async def test_concurrency_limits_in_flight_calls_and_keeps_order() -> None:
    in_flight = Counter[str]()
    peak = 0

    async def slow_assess(case: EvalCase) -> Prediction:
        nonlocal peak
        in_flight["now"] += 1
        peak = max(peak, in_flight["now"])
        await asyncio.sleep(0.01)
        in_flight["now"] -= 1
        return await scripted_assess(case)

    report = await evaluate(script_cases(), slow_assess, concurrency=3, mode="hybrid")

    assert peak == 3
    assert report.mode == "hybrid"
    assert [r.case_id for r in report.results] == [f"c{i}" for i in range(1, 8)]
    assert report.correct == 3


async def test_missing_label_groups_give_zero_rates_not_errors() -> None:
    cases = [EvalCase(case_id="only", text="sniffles", expected=[RO])]

    async def routine(case: EvalCase) -> Prediction:
        return Prediction(level=RO)

    report = await evaluate(cases, routine)

    assert report.emergency_recall == 0.0
    assert report.emergency_total == 0
    assert report.self_care_over_triage == 0.0
    assert report.exact_accuracy == 1.0
    assert "0/0 (0.0%)" in format_table(report)


async def test_table_shows_key_figures_and_never_case_text() -> None:
    table = format_table(await scripted_report())

    assert "mode=rules, 7 cases" in table
    assert "3/7 (42.9%)" in table
    assert "1/2 (50.0%)" in table
    assert "28.6%" in table  # under- and over-triage rates, 2/7
    assert "emergency  urgent  routine  self_care" in table
    assert "c2: expected emergency, predicted routine, rules -" in table
    assert "c7: expected urgent|routine, predicted emergency, rules EM-FAKE-2" in table
    assert "c1:" not in table  # correct cases are not listed
    for text, *_ in SCRIPT:
        assert text not in table


async def test_confusion_rows_align_under_columns() -> None:
    lines = format_table(await scripted_report()).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Confusion"))
    header, emergency, mixed, self_care = lines[start + 1 : start + 5]

    assert header.split() == ["expected", "emergency", "urgent", "routine", "self_care"]
    assert mixed.split() == ["urgent|routine", "1", "1", "0", "1"]
    # Counts are right-aligned under each column name, so every row ends where the header does.
    assert len(emergency) == len(mixed) == len(self_care) == len(header)


def test_semigran45_has_fifteen_cases_per_urgency_group() -> None:
    if not SEMIGRAN45.exists():
        pytest.skip(f"{SEMIGRAN45} not present")

    cases = load_cases(SEMIGRAN45)

    assert len(cases) == 45
    assert Counter(c.label for c in cases) == {
        "emergency": 15,
        "urgent|routine": 15,
        "self_care": 15,
    }
