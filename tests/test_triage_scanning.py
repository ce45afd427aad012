"""Long messages are searched by planning (needed words, literal starts), never by a pass of
every pattern over the whole text. The plan may only save time: on any text, every pattern set
must find exactly the matches `re.finditer` finds. Texts are long mixes of the team's own dev
set openings, lexicon exemplars (English and Chinese), typos and filler, drawn by hypothesis.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.triage.interview import Interview
from bot.triage.lexicon import PatternSet, TextScanner
from bot.triage.rules import TriageRules, _normalise

RULES = TriageRules()
INTERVIEW = Interview()
PATTERN_SETS: list[PatternSet] = [g.patterns for g in RULES._groups] + list(
    INTERVIEW._words.values()
)
DEV = Path(__file__).parent / "data" / "triage_dev_dialogues.jsonl"
PIECES = [
    json.loads(line)["opening"] for line in DEV.read_text(encoding="utf-8").splitlines() if line
] + [
    exemplar
    for finding in RULES.lexicon.findings.values()
    for exemplars in finding.exemplars.values()
    for exemplar in exemplars
]
FILLER = [
    "I went to the shops and then came home.",
    "no, not really",
    "my knee is fine, thanks",
    "24小时",
    "\n\n",
    "  ",
    "??",
    "it's been 3 days",
]


@st.composite
def long_texts(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.sampled_from(PIECES + FILLER), min_size=20, max_size=80))
    text = " ".join(parts)
    # Typos: letters dropped or doubled, words glued together.
    for _ in range(draw(st.integers(0, 20))):
        at = draw(st.integers(0, len(text) - 1))
        edit = draw(st.sampled_from(["", text[at] * 2, text[at] + " ", ""]))
        text = text[:at] + edit + text[at + 1 :]
    return _normalise(text * (2_100 // max(len(text), 1) + 1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(long_texts())
def test_a_planned_search_finds_exactly_what_a_full_scan_finds(text: str) -> None:
    assert len(text) >= 2_000  # long enough to be planned
    scanner = TextScanner(text)
    for patterns in PATTERN_SETS:
        planned = [(m.start(), m.end()) for m in scanner.finditer(patterns)]
        full = [(m.start(), m.end()) for m in patterns.pattern.finditer(text)]
        assert planned == full, patterns.pattern.pattern[:120]
