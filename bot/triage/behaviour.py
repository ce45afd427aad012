"""Behavioural tests of triage, generated (CheckList: Ribeiro et al., ACL 2020).

For every red-flag finding of the lay lexicon (`bot/triage/lexicon/*.yaml`):
- **MFT** (minimum functionality): each of its exemplar sentences alone reaches the finding's
  level;
- **INV** (invariance): the same sentence buried in ~300 words of everyday story, written by a
  relative, hedged, asked as a question, shouted, or with a typo keeps that level;
- **DIR** (directional): added to a harmless message it never lowers the level; denied, in the
  past, in the family history or in a "what if" it never raises the harmless message's level.
Templates and noun phrases live in `behaviour.yaml`. `carebot eval behaviour` prints the
counts; tests/test_triage_behaviour.py requires zero failures.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel

from bot.models import TriageLevel
from bot.triage.service import TriageResult, TriageService

DEFAULT_BEHAVIOUR = Path(__file__).with_name("behaviour.yaml")
_THIRD_PERSON = [
    (re.compile(r"\bI'm\b", re.I), "she's"),
    (re.compile(r"\bI've\b", re.I), "she's"),
    (re.compile(r"\bI'd\b", re.I), "she'd"),
    (re.compile(r"\bI am\b"), "she is"),
    (re.compile(r"\bI was\b"), "she was"),
    (re.compile(r"\bI\b"), "she"),
    (re.compile(r"\bmy\b", re.I), "her"),
    (re.compile(r"\bme\b", re.I), "her"),
    (re.compile(r"\bmyself\b", re.I), "herself"),
    (re.compile(r"\bshe wish\b"), "she wishes"),
    (re.compile(r"\bshe (keep|want|feel|think|need|hate|get|go)\b"), r"she \1s"),
    (re.compile(r"\bshe have\b"), "she has"),
    (re.compile(r"\bshe do\b"), "she does"),
    (re.compile(r"\bshe don't\b"), "she doesn't"),
]
_LONG_WORD = re.compile(r"[a-z]{6,}")


class BehaviourSpec(BaseModel):
    """The vocabulary and templates (behaviour.yaml)."""

    phrases: dict[str, list[str]]
    context: dict[str, str]
    base: str
    story_before: str
    story_after: str
    invariance: dict[str, str]
    adds: str
    denials: dict[str, str]

    @classmethod
    def load(cls, path: Path = DEFAULT_BEHAVIOUR) -> BehaviourSpec:
        return cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class BehaviourCase:
    """One generated test: its kind (MFT, INV, DIR), template, finding and text."""

    kind: str
    template: str
    finding: str
    text: str
    check: Callable[[TriageLevel], bool] = field(compare=False)
    wanted: str = ""


@dataclass
class BehaviourReport:
    """Counts per kind and template, and every failure (with the level reached)."""

    counts: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[BehaviourCase, TriageLevel]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def third_person(sentence: str) -> str:
    """The sentence as a relative reports it ("I can't breathe" -> "she can't breathe")."""
    for pattern, replacement in _THIRD_PERSON:
        sentence = pattern.sub(replacement, sentence)
    return sentence


def with_typo(sentence: str) -> str:
    """Swap two letters in the middle of the sentence's longest word (one typo)."""
    words = _LONG_WORD.findall(sentence.lower())
    if not words:
        return sentence
    word = max(words, key=len)
    middle = len(word) // 2
    typo = word[: middle - 1] + word[middle] + word[middle - 1] + word[middle + 1 :]
    return re.sub(re.escape(word), typo, sentence, count=1, flags=re.I)


def generate(service: TriageService, spec: BehaviourSpec | None = None) -> list[BehaviourCase]:
    """Build every test case for the lexicon's findings (English)."""
    spec = spec or BehaviourSpec.load()
    rules = service.rules
    base_level = decide(service, spec.base).level
    cases: list[BehaviourCase] = []
    for name, finding in rules.lexicon.findings.items():
        level = rules.hit(finding.implies, "en").level

        def at_least(got: TriageLevel, level: TriageLevel = level) -> bool:
            return got.rank >= level.rank

        def no_higher(got: TriageLevel) -> bool:
            return got.rank <= base_level.rank

        wanted = f">= {level.value}"
        when = rules.conditions(finding.implies)
        prefix = " ".join(spec.context[k] for k in when if spec.context.get(k))
        for sentence in finding.exemplars.get("en", []):
            sentence = f"{prefix} {sentence.rstrip('.')}".strip()
            cases.append(BehaviourCase("MFT", "exemplar", name, sentence, at_least, wanted))
            values = {
                "sentence": sentence,
                "story_before": spec.story_before,
                "story_after": spec.story_after,
                "third_person": third_person(sentence),
                "upper": sentence.upper(),
                "typo": with_typo(sentence),
            }
            for template, text in spec.invariance.items():
                cases.append(
                    BehaviourCase("INV", template, name, text.format(**values), at_least, wanted)
                )
            added = spec.adds.format(base=spec.base, sentence=sentence)
            cases.append(BehaviourCase("DIR", "adds", name, added, at_least, wanted))
        for phrase in spec.phrases.get(name, []):
            for template, text in spec.denials.items():
                framed = text.format(base=spec.base, phrase=phrase)
                cases.append(
                    BehaviourCase(
                        "DIR", template, name, framed, no_higher, f"<= {base_level.value}"
                    )
                )
    return cases


def decide(service: TriageService, text: str) -> TriageResult:
    """The decision on one message, with no questions asked (the level as it stands)."""
    return service.decide([text], "en", ask=False)


def run(service: TriageService, spec: BehaviourSpec | None = None) -> BehaviourReport:
    """Run every generated case; count them and keep the failures."""
    report = BehaviourReport()
    for case in generate(service, spec):
        report.counts[f"{case.kind} {case.template}"] += 1
        level = decide(service, case.text).level
        if not case.check(level):
            report.failures.append((case, level))
    return report


def missing_phrases(service: TriageService, spec: BehaviourSpec | None = None) -> list[str]:
    """Lexicon findings with no noun phrase for the directional tests."""
    spec = spec or BehaviourSpec.load()
    return sorted(set(service.rules.lexicon.findings) - set(spec.phrases))
