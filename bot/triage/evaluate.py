"""Score triage against labelled cases: accuracy, under/over-triage, confusion, questions.

A case is an opening message and, for dialogue cases, the facts the patient knows, keyed by the
question catalogue's ids. `converse` plays the patient: it answers each question the bot asks
from the facts, and the case is scored on the level the bot settles on after its rounds of
questions, with the questions asked and the turns taken. A question the facts do not answer
gets "I'm not sure" (dialogue cases: the patient knows what the facts say and no more). A
single-message case is a complete clinical vignette: with `unmentioned="absent"` a red-flag
screen it does not mention is answered "no" (the vignette would have said so), values still
"I'm not sure"; with "unsure" every unanswered question gets "I'm not sure".
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from bot.models import TriageLevel
from bot.triage.interview import AGAIN
from bot.triage.service import PatientMessage, TriageService

# Semigran et al. (BMJ 2015) label cases emergent, non-emergent or self-care; a non-emergent
# case is correctly triaged as either urgent or routine care.
_SEMIGRAN_LEVELS = {
    "em": [TriageLevel.EMERGENCY],
    "ne": [TriageLevel.URGENT, TriageLevel.ROUTINE],
    "sc": [TriageLevel.SELF_CARE],
}
_COLUMNS = sorted(TriageLevel, key=lambda level: level.rank, reverse=True)


class Prediction(BaseModel):
    """What an assessor decided for one text, and why."""

    level: TriageLevel
    rules: list[str] = Field(default_factory=list, description="Ids of the rules that fired.")
    model_level: TriageLevel | None = None
    asked: list[str] = Field(default_factory=list, description="Question ids the bot asked.")
    turns: int = Field(default=1, description="Patient messages, the opening included.")


class EvalCase(BaseModel):
    """One labelled case; any of the expected levels counts as correct."""

    case_id: str
    text: str
    expected: list[TriageLevel] = Field(min_length=1)
    facts: dict[str, str] = Field(
        default_factory=dict, description="What the patient would answer, by question id."
    )
    language: str | None = None

    @field_validator("expected")
    @classmethod
    def _most_urgent_first(cls, levels: list[TriageLevel]) -> list[TriageLevel]:
        return sorted(set(levels), key=lambda level: level.rank, reverse=True)

    @property
    def label(self) -> str:
        """Return the expected levels as one label, most urgent first ("urgent|routine")."""
        return _label(self.expected)


class CaseResult(BaseModel):
    """How the assessor did on one case; `error` < 0 is under-triage, > 0 over-triage."""

    case_id: str
    expected: list[TriageLevel]
    predicted: TriageLevel
    rules: list[str]
    model_level: TriageLevel | None
    asked: list[str] = Field(default_factory=list)
    turns: int = 1
    correct: bool
    error: int = Field(description="Levels outside the acceptable range; negative = too low.")
    latency_ms: float


class LevelRecall(BaseModel):
    """Recall for the cases sharing one expected label."""

    total: int
    correct: int
    recall: float


class Latency(BaseModel):
    """Per-case assessment latency percentiles, in milliseconds."""

    p50: float
    p95: float
    p99: float
    max: float


class EvalReport(BaseModel):
    """Aggregate triage metrics for one run, with the per-case results behind them."""

    mode: str
    cases: int
    correct: int
    exact_accuracy: float
    emergency_found: int
    emergency_total: int
    emergency_recall: float
    per_level_recall: dict[str, LevelRecall]
    under_triage_rate: float
    under_triage_2plus: int
    over_triage_rate: float
    self_care_over_triage: float
    emergency_below_urgent: int = 0
    questions_median: float = 0.0
    questions_max: int = 0
    turns_mean: float = 1.0
    confusion: dict[str, dict[str, int]]
    latency_ms: Latency
    results: list[CaseResult]


Assess = Callable[[EvalCase], Awaitable[Prediction]]
UNSURE = {"en": "I'm not sure", "zh": "不确定"}


NO = {"en": "no", "zh": "没有"}


def simulated_answer(
    asked: list[str], facts: dict[str, str], language: str, absent: set[str] | None = None
) -> str:
    """The simulated patient's reply: one line per question, from the facts or "not sure".

    Questions in `absent` (red-flag screens a complete vignette does not mention) get "no".
    """
    unsure = UNSURE.get(language, UNSURE["en"])
    no = NO.get(language, NO["en"])
    # A screen asked once more in simpler words (`<id>.again`) gets the same honest answer.
    lines = [
        facts.get(q)
        or facts.get(q.removesuffix(AGAIN))
        or (no if absent and q in absent else unsure)
        for q in asked
    ]
    return "\n".join(lines)


async def converse(
    service: TriageService,
    case: EvalCase,
    language: str,
    rounds: int = 2,
    unmentioned: str = "unsure",
) -> Prediction:
    """Play the patient through the bot's rounds of questions; return where it settles."""
    conversation = [PatientMessage(text=case.text)]
    asked: list[str] = []
    screens = {
        q
        for q, question in service.interview.catalogue.questions.items()
        if question.kind == "screen"
    }
    absent = screens if unmentioned == "absent" and not case.facts else None
    for round_number in range(rounds + 1):
        result = await service.assess(conversation, language, ask=round_number < rounds)
        if not result.questions:
            break
        asked += result.questions
        reply = simulated_answer(result.questions, case.facts, language, absent)
        conversation.append(PatientMessage(text=reply, asked=result.questions))
    return Prediction(
        level=result.level,
        rules=[h.rule_id for h in result.hits],
        model_level=result.model.level if result.model else None,
        asked=asked,
        turns=len(conversation),
    )


def _label(levels: Sequence[TriageLevel]) -> str:
    return "|".join(level.value for level in levels)


def load_cases(path: Path) -> list[EvalCase]:
    """Read labelled cases from JSON Lines, generic or Semigran format; fail on any bad line."""
    cases: list[EvalCase] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            cases.append(_parse_line(line, number))
        except ValueError as exc:
            raise ValueError(f"{path.name} line {number}: {exc}") from exc
    if not cases:
        raise ValueError(f"{path.name}: no cases")
    return cases


def _parse_line(line: str, number: int) -> EvalCase:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise ValueError("expected a JSON object")
    facts: Any = {}
    if "case_description" in row:
        text, expected, case_id = row["case_description"], _semigran(row), None
    elif "opening" in row:
        text, expected, case_id = row["opening"], _generic(row), row.get("id")
        facts = row.get("facts") or {}
        if not isinstance(facts, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in facts.items()
        ):
            raise ValueError("facts must map question ids to the patient's answers (strings)")
    else:
        text, expected, case_id = row.get("text"), _generic(row), row.get("id")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("missing text")
    if case_id is not None and not isinstance(case_id, str | int):
        raise ValueError(f"id must be a string or number, not {case_id!r}")
    return EvalCase(
        case_id=f"line {number}" if case_id is None else str(case_id),
        text=text,
        expected=expected,
        facts=facts,
        language=row.get("language") if isinstance(row.get("language"), str) else None,
    )


def _semigran(row: dict[str, Any]) -> list[TriageLevel]:
    code = row.get("urgency_level")
    if code is None:
        raise ValueError("missing urgency_level")
    if not isinstance(code, str) or code not in _SEMIGRAN_LEVELS:
        raise ValueError(f"unknown level {code!r}")
    return _SEMIGRAN_LEVELS[code]


def _generic(row: dict[str, Any]) -> list[TriageLevel]:
    raw = row.get("expected")
    if raw is None:
        raise ValueError("missing expected")
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise ValueError("expected is empty")
    levels = []
    for value in values:
        try:
            levels.append(TriageLevel(value))
        except ValueError:
            raise ValueError(f"unknown level {value!r}") from None
    return levels


async def evaluate(
    cases: Sequence[EvalCase],
    assess: Assess,
    concurrency: int = 1,
    mode: str = "rules",
) -> EvalReport:
    """Run the assessor on every case (at most `concurrency` at once) and score the results."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    if concurrency == 1:
        results = [await _run_one(case, assess) for case in cases]
    else:
        gate = asyncio.Semaphore(concurrency)

        async def limited(case: EvalCase) -> CaseResult:
            async with gate:
                return await _run_one(case, assess)

        results = list(await asyncio.gather(*(limited(case) for case in cases)))
    return _report(mode, list(cases), results)


async def _run_one(case: EvalCase, assess: Assess) -> CaseResult:
    started = time.perf_counter()
    prediction = await assess(case)
    latency_ms = (time.perf_counter() - started) * 1000
    lowest, highest = case.expected[-1].rank, case.expected[0].rank
    rank = prediction.level.rank
    error = rank - lowest if rank < lowest else rank - highest if rank > highest else 0
    return CaseResult(
        case_id=case.case_id,
        expected=case.expected,
        predicted=prediction.level,
        rules=prediction.rules,
        model_level=prediction.model_level,
        asked=prediction.asked,
        turns=prediction.turns,
        correct=prediction.level in case.expected,
        error=error,
        latency_ms=latency_ms,
    )


def _fraction(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _report(mode: str, cases: list[EvalCase], results: list[CaseResult]) -> EvalReport:
    total = len(results)
    labels = sorted({case.label for case in cases}, key=_label_order)
    per_level = {label: LevelRecall(total=0, correct=0, recall=0.0) for label in labels}
    confusion = {label: {level.value: 0 for level in _COLUMNS} for label in labels}
    for case, result in zip(cases, results, strict=True):
        per_level[case.label].total += 1
        per_level[case.label].correct += result.correct
        confusion[case.label][result.predicted.value] += 1
    for row in per_level.values():
        row.recall = _fraction(row.correct, row.total)

    correct = sum(result.correct for result in results)
    emergencies = [r for r in results if TriageLevel.EMERGENCY in r.expected]
    found = sum(r.predicted is TriageLevel.EMERGENCY for r in emergencies)
    self_care = [r for r in results if r.expected == [TriageLevel.SELF_CARE]]
    asked = [len(r.asked) for r in results]
    return EvalReport(
        mode=mode,
        cases=total,
        correct=correct,
        exact_accuracy=_fraction(correct, total),
        emergency_found=found,
        emergency_total=len(emergencies),
        emergency_recall=_fraction(found, len(emergencies)),
        per_level_recall=per_level,
        under_triage_rate=_fraction(sum(r.error < 0 for r in results), total),
        under_triage_2plus=sum(r.error <= -2 for r in results),
        over_triage_rate=_fraction(sum(r.error > 0 for r in results), total),
        self_care_over_triage=_fraction(sum(r.error > 0 for r in self_care), len(self_care)),
        emergency_below_urgent=sum(r.predicted.rank < TriageLevel.URGENT.rank for r in emergencies),
        questions_median=statistics.median(asked) if asked else 0.0,
        questions_max=max(asked, default=0),
        turns_mean=statistics.fmean(r.turns for r in results) if results else 1.0,
        confusion=confusion,
        latency_ms=_latency([r.latency_ms for r in results]),
        results=results,
    )


def _label_order(label: str) -> list[int]:
    # Most urgent label first, so rows read emergency ... self_care like the columns.
    return [-TriageLevel(value).rank for value in label.split("|")]


def _latency(samples: list[float]) -> Latency:
    ordered = sorted(samples)

    def percentile(p: float) -> float:
        # Nearest-rank: an observed value, stable for the small case sets used here.
        return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)] if ordered else 0.0

    return Latency(p50=percentile(50), p95=percentile(95), p99=percentile(99), max=percentile(100))


def format_table(report: EvalReport) -> str:
    """Render a report as plain text for a terminal; shows ids and levels, never case text."""

    def ratio(part: int, whole: int) -> str:
        return f"{part}/{whole} ({_fraction(part, whole):.1%})"

    lines = [
        f"Triage evaluation: mode={report.mode}, {report.cases} cases",
        "",
        f"  Exact accuracy         {ratio(report.correct, report.cases)}",
        f"  Emergency recall       {ratio(report.emergency_found, report.emergency_total)}",
        f"  Under-triage rate      {report.under_triage_rate:.1%}",
        f"  Under-triaged by 2+    {report.under_triage_2plus}",
        f"  Over-triage rate       {report.over_triage_rate:.1%}",
        f"  Self-care over-triage  {report.self_care_over_triage:.1%}",
        f"  Emergency below urgent {report.emergency_below_urgent}",
        f"  Questions asked        median {report.questions_median:g}, "
        f"max {report.questions_max}; patient turns mean {report.turns_mean:.2f}",
        f"  Latency                p50 {report.latency_ms.p50:.2f} ms, "
        f"p95 {report.latency_ms.p95:.2f} ms",
        "",
        "Recall by expected level",
    ]
    width = max([len("expected"), *(len(label) for label in report.confusion)])
    for label, row in report.per_level_recall.items():
        lines.append(f"  {label:<{width}}  {ratio(row.correct, row.total)}")

    lines += ["", "Confusion (rows: expected, columns: predicted)"]
    header = [level.value for level in _COLUMNS]
    lines.append(f"  {'expected':<{width}}  " + "  ".join(header))
    for label, counts in report.confusion.items():
        cells = [f"{counts[column]:>{len(column)}}" for column in header]
        lines.append(f"  {label:<{width}}  " + "  ".join(cells))

    wrong = [result for result in report.results if not result.correct]
    lines += ["", f"Incorrect cases ({len(wrong)})"]
    for result in wrong:
        model = f", model {result.model_level.value}" if result.model_level else ""
        lines.append(
            f"  {result.case_id}: expected {_label(result.expected)}, "
            f"predicted {result.predicted.value}{model}, "
            f"rules {', '.join(result.rules) or '-'}"
        )
    return "\n".join(lines)
