"""Triage: rules first, then (optionally) the LLM classifier; the result the engine acts on."""

from __future__ import annotations

import logging
import re
from enum import StrEnum

from pydantic import BaseModel, Field

from bot.models import RedFlagHit, TriageLevel
from bot.triage.classifier import MissingFact, ModelTriage, TriageClassifier
from bot.triage.facts import PatientFacts, extract_facts
from bot.triage.rules import TriageRules

logger = logging.getLogger(__name__)

_QUESTION_START = re.compile(
    r"^\s*(what|what's|whats|how|when|which|why|is|are|can|could|should|do|does|tell me)\b", re.I
)
_INFO_CUE = re.compile(
    r"\b(signs?|symptoms?|warning|causes?|mean|means|difference|recogni[sz]e|tell if|know if|"
    r"treat|treatment|prevent|first aid|what to do if|should (you|one|someone) do)\b|"
    r"症状|迹象|怎么办|如何|怎样",
    re.I,
)
# Words that put the message about a real person now, not a general question.
_PERSONAL = re.compile(
    r"\b(i|i'm|im|i've|ive|me|my|mine|we|our|us|he|she|his|her|him|they|their|them|mum|mom|"
    r"dad|father|mother|son|daughter|baby|wife|husband|brother|sister|friend|child|kid|grandma|"
    r"grandpa|grandmother|grandfather|partner|someone here|right now)\b|我|他|她|孩子|宝宝|爸|妈",
    re.I,
)
_BREATHING_WORDS = re.compile(r"breath|breathing|dyspn|wheez|呼吸|气短|喘", re.I)
_SEVERITY_WORDS = re.compile(
    r"\b(mild|moderate|severe|bad|terrible|worst|slight|\d+ ?(/|out of) ?10)\b|轻|严重|剧烈", re.I
)


class ModelVote(StrEnum):
    """How much the LLM classifier's level counts (DESIGN: decided by measurement)."""

    OFF = "off"  # not called
    ADVISE = "advise"  # called; its reasons and missing facts are used, its level is recorded
    RAISE = "raise"  # as advise, and the final level is max(rules, model)


class TriageResult(BaseModel):
    """A triage decision with everything needed to explain and audit it."""

    level: TriageLevel
    rule_level: TriageLevel
    decided_by: str = Field(description="rules | model | default")
    hits: list[RedFlagHit] = Field(default_factory=list)
    facts: PatientFacts = PatientFacts()
    model: ModelTriage | None = None
    model_error: str | None = None
    missing: list[MissingFact] = Field(default_factory=list)


def is_general_question(text: str) -> bool:
    """Say whether a message asks about symptoms in general rather than reporting them.

    "What are the signs of a stroke?" asks for information; "my father can't speak properly"
    reports an emergency. Only messages with a question form, an information cue and no
    person in them count as general; everything else is triaged.
    """
    stripped = text.strip()
    asks = stripped.endswith(("?", "？")) or bool(_QUESTION_START.match(stripped))
    return asks and bool(_INFO_CUE.search(stripped)) and not _PERSONAL.search(stripped)


class TriageService:
    """Combine the rules and the classifier into one level, as the settings say."""

    def __init__(
        self,
        rules: TriageRules,
        classifier: TriageClassifier | None = None,
        vote: ModelVote = ModelVote.OFF,
    ) -> None:
        self.rules, self.classifier = rules, classifier
        self.vote = vote if classifier is not None else ModelVote.OFF

    def by_rules(self, texts: list[str], language: str = "en") -> TriageResult:
        """Return the rules' decision alone (no model call; microseconds)."""
        facts = extract_facts(texts)
        hits = self.rules.check(texts, language, facts)
        level = self.rules.level(hits)
        return TriageResult(
            level=level,
            rule_level=level,
            decided_by="rules" if hits else "default",
            hits=hits,
            facts=facts,
            missing=self._missing(texts, hits, facts),
        )

    async def assess(self, texts: list[str], language: str = "en") -> TriageResult:
        """Return the final decision: rules, then the model when the settings allow it."""
        result = self.by_rules(texts, language)
        if self.vote is ModelVote.OFF or self.classifier is None:
            return result
        if result.level is TriageLevel.EMERGENCY:
            return result  # an emergency never waits for a model
        outcome = await self.classifier.classify(texts, [h.rule_id for h in result.hits])
        result.model, result.model_error = outcome.result, outcome.error
        if outcome.result is None:
            # No usable model answer: the rules' level stands (it is never lowered anyway).
            logger.info("triage classifier gave no verdict: %s", outcome.error)
            return result
        extra = [m for m in outcome.result.missing if m not in result.missing]
        result.missing = result.missing + extra
        if self.vote is ModelVote.RAISE and outcome.result.level.rank > result.level.rank:
            result.level, result.decided_by = outcome.result.level, "model"
        return result

    def _missing(
        self, texts: list[str], hits: list[RedFlagHit], facts: PatientFacts
    ) -> list[MissingFact]:
        """Key facts still unknown that could change the level of a non-emergency."""
        if not hits or self.rules.level(hits) is TriageLevel.EMERGENCY:
            return []
        text = " ".join(texts)
        missing: list[MissingFact] = []
        if not facts.age_stated:
            missing.append(MissingFact.AGE)
        if facts.duration_days is None:
            missing.append(MissingFact.DURATION)
        asks = {a for h in hits for a in self.rules.asks(h.rule_id)}
        if MissingFact.BREATHING.value in asks and not _BREATHING_WORDS.search(text):
            missing.append(MissingFact.BREATHING)
        if MissingFact.TEMPERATURE.value in asks and facts.vitals.temperature_c is None:
            missing.append(MissingFact.TEMPERATURE)
        if (
            MissingFact.PREGNANCY.value in asks
            and facts.pregnant is None
            and facts.sex != "male"
            and (facts.age_years is None or 12 <= facts.age_years <= 55)
        ):
            missing.append(MissingFact.PREGNANCY)
        if MissingFact.SEVERITY.value in asks and not _SEVERITY_WORDS.search(text):
            missing.append(MissingFact.SEVERITY)
        return missing
