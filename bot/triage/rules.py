"""Deterministic triage rules loaded from a clinician-readable YAML file (`rules.yaml`).

Findings are matched in the patient's messages by the rules' clinical patterns and by the
lay-language lexicon (`lexicon.yaml`); medspaCy's ConText (`context.py`) then drops those the
patient denies, places in the past, supposes, or attributes to someone else's history. A rule
fires when every group under `all` is present somewhere in the messages (a group is a named
finding or a set of patterns per language) and its `when` conditions hold on the facts read
from the conversation (age, pregnancy, duration, temperature). A lexicon finding with
`implies` fires its rule on its own. Vital signs are scored NEWS2-style. The most urgent firing
rule sets the rule level; when nothing fires the level is `routine`.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, model_validator

from bot.models import Evidence, RedFlagHit, TriageLevel
from bot.triage.context import SUPPRESSING, ClinicalContext, Flag
from bot.triage.criteria import CriteriaBook, Criterion
from bot.triage.facts import PatientFacts, VitalSigns, extract_facts
from bot.triage.lexicon import (
    DEFAULT_LEXICON,
    Lexicon,
    Patterns,
    PatternSet,
    Senses,
    TextScanner,
    Vocabulary,
)
from bot.triage.spelling import SpellingCorrector, vocabulary_from_patterns

DEFAULT_RULES = Path(__file__).with_name("rules.yaml")
DEFAULT_LEVEL = TriageLevel.ROUTINE
_REPEATS = re.compile(r"([a-z])\1{2,}", re.IGNORECASE)
_SENTENCE = re.compile(r"[^.!?\n。！？]*[.!?\n。！？]*")
# Longer texts are read once per distinct sentence: a sentence pasted a thousand times says
# nothing new, and ConText's verdict on it cannot change.
_COLLAPSE_ABOVE = 20_000
_WRAPPED = re.compile(r"(?<=[^\n.!?:;])\n(?=[^\W\d_])")


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
    all: list[str | dict[str, list[str] | bool]] = Field(default_factory=list)
    when: _When = _When()
    # Questions (questions.yaml ids) worth asking when this rule fires and still unknown.
    ask: list[str] = Field(default_factory=list)
    # Self-care rules: what must be answered (screens answered "no") before self-care.
    screens: list[str] = Field(default_factory=list)
    # Fired by the interview only (an answer, or a danger left unanswered), never by words.
    by_interview: bool = False

    @model_validator(mode="after")
    def _has_condition(self) -> _RuleSpec:
        if not self.all and self.when == _When() and not self.by_interview:
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
    findings: dict[str, _Finding] = Field(default_factory=dict)
    vitals: _Vitals
    rules: list[_RuleSpec]


@dataclass(frozen=True, eq=False)
class _Group:
    """One finding the rules look for: its patterns, and a name for the evidence."""

    name: str
    patterns: PatternSet
    temperature_at_least: float | None = None
    # A condition or risk factor: being in the patient's history does not remove it.
    background: bool = False

    @classmethod
    def of(
        cls,
        name: str,
        patterns: Patterns,
        vocabulary: Vocabulary,
        temperature: float | None = None,
        background: bool = False,
    ) -> _Group:
        """Compile a finding's patterns, with the literals that speed up long texts."""
        return cls(name, PatternSet.of(patterns, vocabulary), temperature, background)


@dataclass(frozen=True)
class _Rule:
    spec: _RuleSpec
    groups: tuple[_Group, ...]
    # Set for a lexicon finding that carries its rule on its own: the hit takes the rule's id.
    implied_by: str | None = None


@dataclass
class FindingSet:
    """The findings read from a conversation: present (with evidence) and denied."""

    present: dict[str, Evidence] = field(default_factory=dict)
    denied: set[str] = field(default_factory=set)
    # The messages as read (normalised, indexed), for other word lists to search cheaply.
    scanners: list[TextScanner] = field(default_factory=list)

    def add(self, evidence: Evidence) -> None:
        """Record a present finding; the first evidence of each finding is kept."""
        self.present.setdefault(evidence.finding, evidence)
        self.denied.discard(evidence.finding)


def _normalise(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    # A hard-wrapped line ("he\ndenies fever") continues its sentence; blank lines still break.
    text = _WRAPPED.sub(" ", text)
    return _REPEATS.sub(r"\1", text).lower()  # "caaant" -> "cant"


def _changed_sentences(original: str, corrected: str | None) -> str | None:
    """Of a long corrected text, only the sentences a correction changed (read once more)."""
    if corrected is None or len(original) <= _COLLAPSE_ABOVE:
        return corrected
    before = [m.group(0) for m in _SENTENCE.finditer(original)]
    after = [m.group(0) for m in _SENTENCE.finditer(corrected)]
    if len(before) != len(after):
        return corrected
    changed = [a for b, a in zip(before, after, strict=True) if a != b]
    return " ".join(changed) or None


def _distinct_sentences(text: str) -> tuple[str, Callable[[int], int]]:
    """Drop repeated sentences from a long text; map offsets back to the original."""
    if len(text) <= _COLLAPSE_ABOVE:
        return text, lambda offset: offset
    kept: list[str] = []
    starts: list[tuple[int, int]] = []  # (offset in the kept text, offset in the original)
    seen: set[str] = set()
    length = 0
    for m in _SENTENCE.finditer(text):
        sentence = m.group(0)
        if not sentence or sentence in seen:
            continue
        seen.add(sentence)
        starts.append((length, m.start()))
        kept.append(sentence)
        length += len(sentence)
    keys = [k for k, _ in starts]

    def origin(offset: int) -> int:
        i = bisect.bisect_right(keys, offset) - 1
        return starts[i][1] + offset - starts[i][0] if i >= 0 else offset

    return "".join(kept), origin


class TriageRules:
    """Match triage rules against patient text: a few milliseconds per message."""

    def __init__(
        self,
        path: Path = DEFAULT_RULES,
        lexicon: Lexicon | None = None,
        context: ClinicalContext | None = None,
        criteria: CriteriaBook | None = None,
    ) -> None:
        data = _RuleFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        self.lexicon = lexicon or Lexicon.load(DEFAULT_LEXICON)
        self.context = context or ClinicalContext()
        self._vitals = data.vitals
        self._senses = Senses(self.lexicon.senses)
        vocabulary = Vocabulary()
        findings = {
            name: _Group.of(name, f.patterns, vocabulary, f.temperature_at_least)
            for name, f in data.findings.items()
        }
        for name, entry in self.lexicon.findings.items():
            if name in findings:
                raise ValueError(f"lexicon finding {name!r} is also a rules.yaml finding")
            findings[name] = _Group.of(name, entry.lay, vocabulary)
        self.rules: list[_Rule] = []
        seen_ids: dict[str, int] = {}
        for spec in (s for s in data.rules if not s.by_interview):
            groups = []
            # A rule id given again ("another way to the same finding") names its own groups.
            seen_ids[spec.id] = seen_ids.get(spec.id, 0) + 1
            prefix = spec.id if seen_ids[spec.id] == 1 else f"{spec.id}/{seen_ids[spec.id]}"
            for number, item in enumerate(spec.all, start=1):
                if isinstance(item, str):
                    if item not in findings:
                        raise ValueError(f"rule {spec.id}: unknown finding {item!r}")
                    groups.append(findings[item])
                else:
                    background = bool(item.get("background", False))
                    patterns = {k: v for k, v in item.items() if isinstance(v, list)}
                    groups.append(
                        _Group.of(f"{prefix}#{number}", patterns, vocabulary, None, background)
                    )
            self.rules.append(_Rule(spec, tuple(groups)))
        specs: dict[str, _RuleSpec] = {s.id: s for s in data.rules if s.by_interview}
        for rule in self.rules:
            first = specs.setdefault(rule.spec.id, rule.spec)
            if first.level is not rule.spec.level:
                raise ValueError(f"rule {rule.spec.id} appears twice with different levels")
        for name, entry in self.lexicon.findings.items():
            if entry.implies not in specs:
                raise ValueError(f"lexicon finding {name!r}: unknown rule {entry.implies!r}")
            self.rules.append(_Rule(specs[entry.implies], (findings[name],), implied_by=name))
        self._groups = list({id(g): g for r in self.rules for g in r.groups}.values())
        # Guideline criteria are rules whose one finding is matched by meaning only
        # (semantic.py): their groups have no patterns and are not scanned.
        self.criteria: dict[str, Criterion] = {}
        for criterion in criteria.criteria if criteria else []:
            spec = _RuleSpec(
                id=criterion.rule_id,
                level=criterion.spec.level,
                explanation=criterion.explanation(),
                reference=criterion.spec.source,
                all=[criterion.finding],
                when=_When(**criterion.spec.when.model_dump()),
            )
            group = _Group.of(criterion.finding, {}, vocabulary)
            self.rules.append(_Rule(spec, (group,)))
            specs[spec.id] = spec
            self.criteria[spec.id] = criterion
        all_patterns = [
            p for f in data.findings.values() for ps in f.patterns.values() for p in ps
        ] + [
            p
            for spec in data.rules
            for item in spec.all
            if isinstance(item, dict)
            for ps in item.values()
            if isinstance(ps, list)
            for p in ps
        ]
        all_patterns += [p for f in self.lexicon.findings.values() for p in f.lay.get("en", [])]
        from spacy.lang.en.stop_words import STOP_WORDS

        self._speller = SpellingCorrector(vocabulary_from_patterns(all_patterns), STOP_WORDS)
        self._asks = {r.spec.id: r.spec.ask for r in self.rules}
        self._screens = {r.spec.id: r.spec.screens for r in self.rules}
        self._specs = specs
        self.ids = set(specs) | {v.id for v in data.vitals.levels}
        self.emergency_ids = {
            r.spec.id for r in self.rules if r.spec.level is TriageLevel.EMERGENCY
        }
        # Every finding a rule reads (its groups, and lexicon findings that imply it).
        self.findings_of: dict[str, set[str]] = {}
        for rule in self.rules:
            self.findings_of.setdefault(rule.spec.id, set()).update(g.name for g in rule.groups)
        self.finding_names = {g.name for g in self._groups}

    def findings(self, texts: Sequence[str]) -> FindingSet:
        """Read every finding the rules know from the messages, with ConText applied.

        Each message is read on its own (a negation never reaches into the next one), as
        written and with typos corrected: a correction can add a finding but never hide one.
        """
        found = FindingSet()
        for index, raw in enumerate(texts):
            if not raw:
                continue
            original = _normalise(raw)
            corrected = _changed_sentences(original, self._speller.correct(original))
            for variant in (original, corrected):
                if variant is not None:
                    self._read(variant, index, found)
        return found

    def _read(self, text: str, index: int, found: FindingSet) -> None:
        text, origin = _distinct_sentences(text)
        scanner = TextScanner(text)
        found.scanners.append(scanner)
        reading = self.context.read(text)
        for group in self._groups:
            if group.name in found.present:
                continue  # one piece of evidence per finding is enough
            for m in scanner.finditer(group.patterns):
                if self._senses.opens(text, m.start(), m.end()):
                    continue
                context = reading.flags(m.start(), m.end())
                if group.background:
                    context = context - {Flag.HISTORICAL}
                if context & SUPPRESSING:
                    if Flag.NEGATED in context:
                        found.denied.add(group.name)
                    continue
                start = origin(m.start())
                evidence = Evidence(
                    finding=group.name,
                    text=m.group(0),
                    message=index,
                    start=start,
                    end=start + m.end() - m.start(),
                    flags=sorted(context),
                )
                found.add(evidence)
                break

    def evaluate(
        self, found: FindingSet, facts: PatientFacts, language: str = "en"
    ) -> list[RedFlagHit]:
        """Return the rules that fire on these findings and facts, most urgent first."""
        temperature = facts.vitals.temperature_c
        by_rule: dict[str, RedFlagHit] = {}
        for rule in self.rules:
            if not self._holds(rule.spec.when, facts):
                continue
            evidence = []
            for group in rule.groups:
                seen = found.present.get(group.name)
                threshold = group.temperature_at_least
                hot = threshold is not None and temperature is not None and temperature >= threshold
                if seen is None and hot:
                    seen = Evidence(
                        finding=group.name, text=f"{temperature:.1f} °C", source="vitals"
                    )
                if seen is None:
                    break
                evidence.append(seen)
            else:
                hit = by_rule.get(rule.spec.id)
                if hit is None:
                    by_rule[rule.spec.id] = RedFlagHit(
                        rule_id=rule.spec.id,
                        level=rule.spec.level,
                        explanation=rule.spec.explanation.get(language)
                        or rule.spec.explanation["en"],
                        evidence=evidence,
                        citation=self.citation(rule.spec.id),
                    )
                else:
                    hit.evidence += [e for e in evidence if e not in hit.evidence]
        hits = list(by_rule.values()) + self._vitals_hits(facts, language)
        return sorted(hits, key=lambda h: -h.level.rank)

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
                evidence = Evidence(finding="vital_signs", text=f"NEWS2 {total}", source="vitals")
                return [
                    RedFlagHit(
                        rule_id=band.id,
                        level=band.level,
                        explanation=explanation,
                        evidence=[evidence],
                    )
                ]
        return []

    def check(
        self, texts: Iterable[str], language: str = "en", facts: PatientFacts | None = None
    ) -> list[RedFlagHit]:
        """Return the rules that fire on the given patient messages, most urgent first."""
        messages = [t for t in texts if t]
        facts = facts or extract_facts(messages)
        return self.evaluate(self.findings(messages), facts, language)

    def hit(self, rule_id: str, language: str, evidence: Evidence | None = None) -> RedFlagHit:
        """Return a rule's hit on the strength of one piece of evidence (a screen's "yes")."""
        spec = self._specs[rule_id]
        return RedFlagHit(
            rule_id=spec.id,
            level=spec.level,
            explanation=spec.explanation.get(language) or spec.explanation["en"],
            evidence=[evidence] if evidence else [],
            citation=self.citation(rule_id),
        )

    def conditions(self, rule_id: str) -> list[str]:
        """The facts a rule's `when` needs ("age_under", "pregnant", ...)."""
        spec = self._specs.get(rule_id)
        return [] if spec is None else sorted(spec.when.model_dump(exclude_none=True))

    def citation(self, rule_id: str) -> str | None:
        """The guideline page a criterion rule comes from ("Chest pain (https://...)")."""
        criterion = self.criteria.get(rule_id)
        if criterion is None:
            return None
        return f"{criterion.title} ({criterion.spec.source})"

    def explain(self, rule_id: str, language: str = "en") -> str | None:
        """Return a rule's explanation (for doctors' summaries), or None for an unknown id."""
        for rule in self.rules:
            if rule.spec.id == rule_id:
                return rule.spec.explanation.get(language) or rule.spec.explanation["en"]
        return None

    def asks(self, rule_id: str) -> list[str]:
        """Return the question ids a rule wants asked when they are unknown."""
        return self._asks.get(rule_id, [])

    def screens(self, rule_id: str) -> list[str]:
        """Return the question ids a self-care rule needs answered before self-care."""
        return self._screens.get(rule_id, [])

    @staticmethod
    def level(hits: list[RedFlagHit]) -> TriageLevel:
        """Return the most urgent level among the hits, or the default when none fired."""
        return TriageLevel.highest(*(h.level for h in hits)) or DEFAULT_LEVEL

    @staticmethod
    def emergencies(hits: list[RedFlagHit]) -> list[RedFlagHit]:
        """Return the hits that make this an emergency."""
        return [h for h in hits if h.level is TriageLevel.EMERGENCY]
