"""Deterministic, negation-aware red-flag rules loaded from a clinician-readable YAML file."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from bot.models import RedFlagHit, TriageLevel

DEFAULT_RULES = Path(__file__).with_name("redflags.yaml")
_CJK = re.compile(r"[\u3400-\u9fff]")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)


class _Negation(BaseModel):
    window_words: int = 4
    window_chars: int = 3
    cues: dict[str, list[str]]
    clause_breaks: str


class _RuleSpec(BaseModel):
    id: str
    level: TriageLevel
    explanation: dict[str, str]
    reference: str
    all: list[dict[str, list[str]]] = Field(min_length=1)


class _RuleFile(BaseModel):
    negation: _Negation
    rules: list[_RuleSpec]


@dataclass(frozen=True)
class _Rule:
    spec: _RuleSpec
    groups: tuple[tuple[re.Pattern[str], ...], ...]


def _compile(language: str, pattern: str) -> re.Pattern[str]:
    # English-like patterns anchor at a word start so "arm" does not match "warm".
    prefix = "" if language == "zh" else r"(?<![^\W_])"
    return re.compile(prefix + pattern, re.IGNORECASE)


class RedFlagRules:
    """Match red-flag rules against patient text; well under a millisecond per message."""

    def __init__(self, path: Path = DEFAULT_RULES) -> None:
        data = _RuleFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        self._neg = data.negation
        self._breaks = re.compile(data.negation.clause_breaks, re.IGNORECASE)
        self._en_cues = {
            c for lang, cues in data.negation.cues.items() if lang != "zh" for c in cues
        }
        self._zh_cues = data.negation.cues.get("zh", [])
        self.rules = [
            _Rule(
                spec,
                tuple(
                    tuple(_compile(lang, p) for lang, patterns in group.items() for p in patterns)
                    for group in spec.all
                ),
            )
            for spec in data.rules
        ]

    def _negated(self, text: str, start: int) -> bool:
        before = text[:start]
        clause = self._breaks.split(before)[-1] if before else ""
        if not clause:
            return False
        if _CJK.search(text[start : start + 1]):
            tail = clause[-(self._neg.window_chars + 2) :]
            return any(cue in tail for cue in self._zh_cues)
        words = [w.lower() for w in _WORD.findall(clause)][-self._neg.window_words :]
        window = " ".join(words)
        return any(w in self._en_cues or w.endswith("n't") for w in words) or any(
            " " in cue and cue in window for cue in self._en_cues
        )

    def _group_matches(self, group: tuple[re.Pattern[str], ...], text: str) -> bool:
        for pattern in group:
            for match in pattern.finditer(text):
                if not self._negated(text, match.start()):
                    return True
        return False

    def check(self, texts: Iterable[str], language: str = "en") -> list[RedFlagHit]:
        """Return the rules that fire on the given patient messages, most urgent first."""
        joined = "\n".join(t for t in texts if t)
        hits = [
            RedFlagHit(
                rule_id=r.spec.id,
                level=r.spec.level,
                explanation=r.spec.explanation.get(language) or r.spec.explanation["en"],
            )
            for r in self.rules
            if all(self._group_matches(g, joined) for g in r.groups)
        ]
        return sorted(hits, key=lambda h: -h.level.rank)

    @staticmethod
    def level(hits: list[RedFlagHit]) -> TriageLevel | None:
        """Return the most urgent level among the hits."""
        return TriageLevel.highest(*(h.level for h in hits))
