"""Deterministic triage rules loaded from a clinician-readable YAML file (`rules.yaml`).

A rule fires when every group under `all` matches somewhere in the patient's messages (a group
is a named finding or a set of patterns per language) and its `when` conditions hold on the
facts read from the conversation (age, pregnancy, duration, temperature). Matches preceded in
the same clause by a negation cue do not count. Vital signs are scored NEWS2-style. The most
urgent firing rule sets the rule level; when nothing fires the level is `routine`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, model_validator

from bot.models import RedFlagHit, TriageLevel
from bot.triage.facts import PatientFacts, VitalSigns, extract_facts
from bot.triage.spelling import SpellingCorrector, vocabulary_from_patterns

DEFAULT_RULES = Path(__file__).with_name("rules.yaml")
DEFAULT_LEVEL = TriageLevel.ROUTINE
_CJK = re.compile(r"[\u3400-\u9fff]")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)
_REPEATS = re.compile(r"([a-z])\1{2,}", re.IGNORECASE)
_STRONG_BREAK = re.compile(r"[.;!?\n。；！？]|\bbut\b|\bhowever\b|\bthough\b", re.IGNORECASE)
_WRAPPED = re.compile(r"(?<=[^\n.!?:;])\n(?=[^\W\d_])")
_LIST_SPLIT = re.compile(r",|\bor\b|\bnor\b|\band\b", re.IGNORECASE)
_OR = re.compile(r"\b(or|nor)\b", re.IGNORECASE)
_AND_OR = re.compile(r"\b(or|nor|and)\b", re.IGNORECASE)
_LIST_VERBS = frozenset({"denies", "denied", "deny", "without", "negative for", "free of"})

Patterns = dict[str, list[str]]


class _Negation(BaseModel):
    window_words: int = 4
    window_chars: int = 3
    cues: dict[str, list[str]]
    clause_breaks: str


class _Finding(BaseModel):
    patterns: Patterns
    # A stated temperature at or above this also counts as the finding (for "fever").
    temperature_at_least: float | None = None


class _When(BaseModel):
    """Conditions on the facts; an unknown fact fails a condition that needs it."""

    age_under: float | None = None
    age_at_least: float | None = None
    pregnant: bool | None = Field(
        default=None, description="true: known pregnant; false: not known to be pregnant"
    )
    sex: str | None = None
    duration_at_least_days: float | None = None
    # Unknown duration passes: a complaint with no stated duration is taken as new.
    duration_under_days: float | None = None


class _RuleSpec(BaseModel):
    id: str
    level: TriageLevel
    explanation: dict[str, str]
    reference: str
    all: list[str | Patterns] = Field(default_factory=list)
    when: _When = _When()
    # Facts worth a follow-up question when this rule fires and they are unknown.
    ask: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_condition(self) -> _RuleSpec:
        if not self.all and self.when == _When():
            raise ValueError(f"rule {self.id} has neither patterns nor conditions")
        if "en" not in self.explanation:
            raise ValueError(f"rule {self.id} needs an English explanation")
        return self


class _VitalsLevel(BaseModel):
    id: str
    level: TriageLevel
    total_at_least: int
    single_at_least: int | None = None
    explanation: dict[str, str]


class _Vitals(BaseModel):
    reference: str
    applies_from_age: float
    # Per sign: [upper bound (inclusive), points] in increasing order of the bound.
    scores: dict[str, list[tuple[float, int]]]
    levels: list[_VitalsLevel]


class _RuleFile(BaseModel):
    negation: _Negation
    findings: dict[str, _Finding] = Field(default_factory=dict)
    vitals: _Vitals
    rules: list[_RuleSpec]


@dataclass(frozen=True)
class _Group:
    pattern: re.Pattern[str]
    temperature_at_least: float | None = None


@dataclass(frozen=True)
class _Rule:
    spec: _RuleSpec
    groups: tuple[_Group, ...]


def _compile(patterns: Patterns) -> re.Pattern[str]:
    # English-like patterns anchor at a word start so "arm" does not match "warm";
    # Chinese has no spaces, so its patterns match anywhere. One anchor in front of one
    # alternation keeps matching fast: mid-word positions fail at the first check.
    for items in patterns.values():
        for p in items:
            if re.sub(r"\\[a-zA-Z]", "", p) != re.sub(r"\\[a-zA-Z]", "", p).lower():
                raise ValueError(f"pattern {p!r}: write patterns in lower case")
    worded = [p for language, items in patterns.items() if language != "zh" for p in items]
    anywhere = [p for p in patterns.get("zh", [])]
    parts = []
    if worded:
        parts.append(r"(?<![^\W_])(?:" + "|".join(f"(?:{p})" for p in worded) + ")")
    if anywhere:
        parts.append("|".join(f"(?:{p})" for p in anywhere))
    # Patterns are written in lower case and texts are lowered once: faster than IGNORECASE.
    return re.compile("|".join(parts))


def _normalise(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    # A hard-wrapped line ("he\ndenies fever") continues its sentence; blank lines still break.
    text = _WRAPPED.sub(" ", text)
    return _REPEATS.sub(r"\1", text).lower()  # "caaant" -> "cant"


class TriageRules:
    """Match triage rules against patient text; well under a millisecond per message."""

    def __init__(self, path: Path = DEFAULT_RULES) -> None:
        data = _RuleFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        self._neg = data.negation
        self._vitals = data.vitals
        self._breaks = re.compile(data.negation.clause_breaks, re.IGNORECASE)
        self._en_cues = {
            c for lang, cues in data.negation.cues.items() if lang != "zh" for c in cues
        }
        self._zh_cues = data.negation.cues.get("zh", [])
        words = sorted((re.escape(c) for c in self._en_cues), key=len, reverse=True)
        self._cue_pattern = re.compile(r"\b(?:" + "|".join(words) + r")\b", re.IGNORECASE)
        findings = {
            name: _Group(_compile(f.patterns), f.temperature_at_least)
            for name, f in data.findings.items()
        }
        self.rules: list[_Rule] = []
        for spec in data.rules:
            groups = []
            for item in spec.all:
                if isinstance(item, str):
                    if item not in findings:
                        raise ValueError(f"rule {spec.id}: unknown finding {item!r}")
                    groups.append(findings[item])
                else:
                    groups.append(_Group(_compile(item)))
            self.rules.append(_Rule(spec, tuple(groups)))
        all_patterns = [p for f in data.findings.values() for ps in f.patterns.values() for p in ps]
        all_patterns += [
            p
            for spec in data.rules
            for item in spec.all
            if isinstance(item, dict)
            for ps in item.values()
            for p in ps
        ]
        self._speller = SpellingCorrector(vocabulary_from_patterns(all_patterns))
        self._asks = {r.spec.id: r.spec.ask for r in self.rules}
        self.ids = {r.spec.id for r in self.rules} | {v.id for v in data.vitals.levels}

    def _negated(self, text: str, start: int, end: int) -> bool:
        before = text[:start]
        clause = self._breaks.split(before)[-1] if before else ""
        if not clause:
            return False
        if _CJK.search(text[start : start + 1]):
            tail = clause[-(self._neg.window_chars + 2) :]
            return any(cue in tail for cue in self._zh_cues)
        words = [w.lower() for w in _WORD.findall(clause)][-self._neg.window_words :]
        window = " ".join(words)
        if any(w in self._en_cues or w.endswith("n't") for w in words) or any(
            " " in cue and cue in window for cue in self._en_cues
        ):
            return True
        return self._negated_list(text, start, end)

    def _negated_list(self, text: str, start: int, end: int) -> bool:
        """Carry a negation over a list: "denies cough, runny nose, or fever"."""
        sentence = _STRONG_BREAK.split(text[:start])[-1]
        cues = list(self._cue_pattern.finditer(sentence))
        if not cues:
            return False
        cue = cues[-1]
        between = sentence[cue.end() :]
        items = _LIST_SPLIT.split(between)
        sizes = [len(_WORD.findall(i)) for i in items]
        if items[-1].strip() or sizes[0] > 5 or any(n > 4 for n in sizes[1:]):
            return False
        rest = _STRONG_BREAK.split(text[end:])[0]
        # "denies fever, chills and cough" lists what is denied; after a bare "no", only a
        # list closed by "or"/"nor" is unambiguous ("no fever, chest pain" may mean both).
        closer = _AND_OR if cue.group(0).lower() in _LIST_VERBS else _OR
        return bool(closer.search(between) or closer.search(rest))

    def _matches(self, group: _Group, texts: tuple[str, ...], facts: PatientFacts) -> bool:
        temperature = facts.vitals.temperature_c
        threshold = group.temperature_at_least
        if threshold is not None and temperature is not None and temperature >= threshold:
            return True
        return any(
            not self._negated(text, m.start(), m.end())
            for text in texts
            for m in group.pattern.finditer(text)
        )

    @staticmethod
    def _holds(when: _When, facts: PatientFacts) -> bool:
        age, days = facts.age_years, facts.duration_days
        checks = [
            when.age_under is None or (age is not None and age < when.age_under),
            when.age_at_least is None or (age is not None and age >= when.age_at_least),
            when.pregnant is None or (facts.pregnant is True) == when.pregnant,
            when.sex is None or facts.sex == when.sex,
            when.duration_at_least_days is None
            or (days is not None and days >= when.duration_at_least_days),
            when.duration_under_days is None or days is None or days < when.duration_under_days,
        ]
        return all(checks)

    def news2(self, vitals: VitalSigns) -> tuple[int, int]:
        """Return the NEWS2-style total and the highest single score of the stated signs."""
        total = highest = 0
        for sign, bands in self._vitals.scores.items():
            value = getattr(vitals, sign)
            if value is None:
                continue
            points = next((p for bound, p in bands if value <= bound), bands[-1][1])
            total += points
            highest = max(highest, points)
        return total, highest

    def _vitals_hits(self, facts: PatientFacts, language: str) -> list[RedFlagHit]:
        if facts.age_years is not None and facts.age_years < self._vitals.applies_from_age:
            return []  # adult bands: a toddler's normal pulse would score as alarming
        total, highest = self.news2(facts.vitals)
        for band in self._vitals.levels:
            single = band.single_at_least is not None and highest >= band.single_at_least
            if total >= band.total_at_least or single:
                explanation = band.explanation.get(language) or band.explanation["en"]
                return [RedFlagHit(rule_id=band.id, level=band.level, explanation=explanation)]
        return []

    def check(
        self, texts: Iterable[str], language: str = "en", facts: PatientFacts | None = None
    ) -> list[RedFlagHit]:
        """Return the rules that fire on the given patient messages, most urgent first."""
        originals = [_normalise(t) for t in texts if t]
        facts = facts or extract_facts(originals)
        corrected = [c for c in map(self._speller.correct, originals) if c is not None]
        # Messages are matched one by one so that a negation never reaches into the next.
        variants = tuple(originals + corrected)
        # Shared findings ("fever") are matched once per check, not once per rule.
        seen: dict[int, bool] = {}

        def matched(group: _Group) -> bool:
            key = id(group)
            if key not in seen:
                seen[key] = self._matches(group, variants, facts)
            return seen[key]

        hits = [
            RedFlagHit(
                rule_id=r.spec.id,
                level=r.spec.level,
                explanation=r.spec.explanation.get(language) or r.spec.explanation["en"],
            )
            for r in self.rules
            if self._holds(r.spec.when, facts) and all(matched(g) for g in r.groups)
        ]
        hits += self._vitals_hits(facts, language)
        return sorted(hits, key=lambda h: -h.level.rank)

    def explain(self, rule_id: str, language: str = "en") -> str | None:
        """Return a rule's explanation (for doctors' summaries), or None for an unknown id."""
        for rule in self.rules:
            if rule.spec.id == rule_id:
                return rule.spec.explanation.get(language) or rule.spec.explanation["en"]
        return None

    def asks(self, rule_id: str) -> list[str]:
        """Return the follow-up facts a rule wants when they are unknown."""
        return self._asks.get(rule_id, [])

    @staticmethod
    def level(hits: list[RedFlagHit]) -> TriageLevel:
        """Return the most urgent level among the hits, or the default when none fired."""
        return TriageLevel.highest(*(h.level for h in hits)) or DEFAULT_LEVEL

    @staticmethod
    def emergencies(hits: list[RedFlagHit]) -> list[RedFlagHit]:
        """Return the hits that make this an emergency."""
        return [h for h in hits if h.level is TriageLevel.EMERGENCY]
