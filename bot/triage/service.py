"""Triage: one decision per message, from the rules, the lexicon, meaning and the interview.

`TriageService.decide` reads the whole conversation (the patient's messages, each with the
question ids the bot asked just before it) and returns one `TriageResult`: the level, the
rules that fired with their evidence, the facts, the answers to red-flag screens, and the
questions to ask next. Everyone who needs a triage decision (the engine, the database-down
fallback, `carebot triage`, `carebot eval triage`, doctors' summaries, the prompt preview)
calls it; nobody re-runs the rules on other inputs. The optional LLM classifier (`assess`)
may add questions or raise the level, never lower it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, Field

from bot.models import Evidence, RedFlagHit, TriageLevel
from bot.triage.classifier import ModelTriage, TriageClassifier
from bot.triage.context import is_general_question
from bot.triage.facts import PatientFacts, extract_facts
from bot.triage.interview import Answer, Interview, InterviewState, read_answer, read_answers
from bot.triage.rules import FindingSet, TriageRules
from bot.triage.semantic import SemanticMatcher
from bot.workers import TRIAGE

logger = logging.getLogger(__name__)

# The classifier's follow-up facts, as catalogue question ids.
_MODEL_QUESTIONS = {"breathing": "rf_breathing"}
_NUMBER = re.compile(r"(\d+(?:\.\d+)?)")
_AGE_UNIT = re.compile(r"(month|week|day|个月|周|天)", re.I)
# What a "yes" to a yes/no fact question says, in words the rules read (en, zh).
_YES_MEANS = {
    "onset": ("it came on suddenly", "突然发生的"),
    "course": ("it is getting worse", "越来越重"),
}
_ZH_DIGITS = dict(zip("一二两三四五六七八九", (1, 2, 2, 3, 4, 5, 6, 7, 8, 9), strict=True))


class ModelVote(StrEnum):
    """How much the LLM classifier's level counts (DESIGN: decided by measurement)."""

    OFF = "off"  # not called
    ADVISE = "advise"  # called; its reasons and missing facts are used, its level is recorded
    RAISE = "raise"  # as advise, and the final level is max(rules, model)


class PatientMessage(BaseModel):
    """One patient message and the question ids the bot asked just before it."""

    text: str
    asked: list[str] = Field(default_factory=list)


class TriageResult(BaseModel):
    """A triage decision with everything needed to explain and audit it."""

    level: TriageLevel
    rule_level: TriageLevel
    decided_by: str = Field(description="rules | model | default | screening")
    hits: list[RedFlagHit] = Field(default_factory=list)
    facts: PatientFacts = PatientFacts()
    complaints: list[str] = Field(default_factory=list)
    questions: list[str] = Field(
        default_factory=list, description="Question ids to ask now, most dangerous first."
    )
    asked: list[str] = Field(default_factory=list, description="Question ids asked so far.")
    screens: dict[str, Answer] = Field(default_factory=dict)
    unknown: list[str] = Field(
        default_factory=list, description="Questions that matter and are still unanswered."
    )
    general: bool = Field(
        default=False, description="The message asks for information and reports nothing."
    )
    model: ModelTriage | None = None
    model_error: str | None = None


def _as_messages(conversation: Sequence[PatientMessage | str]) -> list[PatientMessage]:
    return [m if isinstance(m, PatientMessage) else PatientMessage(text=m) for m in conversation]


def _fact_phrase(qid: str, answer: str) -> str | None:
    """Turn a bare answer to a value question into words facts.py reads ("3" -> "aged 3")."""
    number = _NUMBER.search(answer)
    value = number.group(1) if number else None
    if value is None:
        value = next((str(n) for ch, n in _ZH_DIGITS.items() if ch in answer), None)
    if qid == "age" and value is not None:
        unit = _AGE_UNIT.search(answer)
        if unit:
            word = {"个月": "month", "周": "week", "天": "day"}.get(unit.group(1), unit.group(1))
            return f"{value} {word}s old"
        return f"aged {value}"
    if qid == "temperature" and value is not None:
        return f"temperature {value}"
    if qid == "duration":
        return f"for {answer}"
    return None


class TriageService:
    """Decide the triage level of a conversation; the model may only raise it."""

    def __init__(
        self,
        rules: TriageRules,
        classifier: TriageClassifier | None = None,
        vote: ModelVote = ModelVote.OFF,
        semantic: SemanticMatcher | None = None,
        interview: Interview | None = None,
        questions_per_round: int = 3,
    ) -> None:
        self.rules, self.classifier, self.semantic = rules, classifier, semantic
        self.vote = vote if classifier is not None else ModelVote.OFF
        self.interview = interview or Interview()
        self.questions_per_round = questions_per_round

    def decide(
        self,
        conversation: Sequence[PatientMessage | str],
        language: str = "en",
        ask: bool = True,
    ) -> TriageResult:
        """Return the decision for the conversation so far (no model call; milliseconds).

        `ask`: whether questions may still be asked (the engine's rounds are not used up).
        """
        messages = _as_messages(conversation)
        texts = [m.text for m in messages]
        state = InterviewState()
        answer_hits: list[RedFlagHit] = []
        extra_facts: list[str] = []
        for index, message in enumerate(messages):
            state.asked += [q for q in message.asked if q not in state.asked]
            for qid, said in read_answers(message.text, message.asked).items():
                question = self.interview.question(qid)
                if question.kind == "screen":
                    # Asked about a danger, a patient who describes something ("my neck
                    # feels stiff") is saying yes: only a no or a doubt is not.
                    answer = read_answer(said) or Answer.YES
                    state.screens[qid] = answer
                    if answer is Answer.YES and question.if_yes:
                        evidence = Evidence(finding=qid, text=said, message=index, source="answer")
                        answer_hits.append(self.rules.hit(question.if_yes, language, evidence))
                else:
                    state.values[qid] = said
                    phrase = _fact_phrase(qid, said)
                    if phrase:
                        extra_facts.append(phrase)
                    meaning = _YES_MEANS.get(qid)
                    if meaning and read_answer(said) is Answer.YES:
                        extra_facts.append(meaning[language == "zh"])
        facts = extract_facts(texts + extra_facts)
        found = self.rules.findings(texts + extra_facts)
        hits = _merge(self.rules.evaluate(found, facts, language), answer_hits)
        if self.semantic is not None and self.rules.level(hits) is not TriageLevel.EMERGENCY:
            # Meaning can only add findings: an emergency found by its words is answered
            # without waiting for the embedding model (which retrieval shares).
            for evidence in self.semantic.find(texts):
                if evidence.finding not in found.present:
                    found.add(evidence)
            hits = _merge(self.rules.evaluate(found, facts, language), answer_hits)
        rule_level = self.rules.level(hits)
        general = bool(texts) and is_general_question(texts[-1]) and not hits
        return self._settle(hits, rule_level, facts, found, state, texts, general, ask)

    def _settle(
        self,
        hits: list[RedFlagHit],
        rule_level: TriageLevel,
        facts: PatientFacts,
        found: FindingSet,
        state: InterviewState,
        texts: list[str],
        general: bool,
        ask: bool,
    ) -> TriageResult:
        """Pick the questions still worth asking, and hold self-care until it is screened."""
        fired = {h.rule_id for h in hits}
        text = "\n".join(texts)
        # A screen's `denied_by` may name a rule: denying any of its findings denies it.
        denied = set(found.denied) | {
            rule for rule, names in self.rules.findings_of.items() if names & found.denied
        }
        state.complaints = self.interview.complaints(texts, found.scanners)
        self_care = [h for h in hits if h.level is TriageLevel.SELF_CARE]
        wanted = [q for h in hits for q in self.rules.asks(h.rule_id)]
        candidates = self.interview.candidates(state.complaints, wanted, self.rules.emergency_ids)
        if rule_level is TriageLevel.SELF_CARE:
            # What decides self-care is asked first: the general and the pathway's screens.
            deciding = self.interview.self_care_screens(state.complaints)
            deciding += [q for h in self_care for q in self.rules.screens(h.rule_id)]
            candidates = list(dict.fromkeys([*deciding, *candidates]))
        unknown = [
            q for q in candidates if not self.interview.known(q, facts, state, fired, denied, text)
        ]
        level, decided_by = rule_level, "rules" if hits else "default"
        general_screens = self.interview.self_care_screens(state.complaints)
        if rule_level is TriageLevel.SELF_CARE and not any(
            self.interview.screened_out(
                general_screens + self.rules.screens(h.rule_id), facts, state, denied, text
            )
            for h in self_care
        ):
            # Self-care is concluded from danger screened out, never from a harmless word.
            level, decided_by = TriageLevel.ROUTINE, "screening"
        questions: list[str] = []
        if ask and not general and level not in (TriageLevel.EMERGENCY, TriageLevel.SELF_CARE):
            # Emergencies never wait for questions; a screened self-care case needs none.
            questions = self.interview.next_questions(
                candidates, facts, state, fired, denied, text, self.questions_per_round
            )
        return TriageResult(
            level=level,
            rule_level=rule_level,
            decided_by=decided_by,
            hits=hits,
            facts=facts,
            complaints=state.complaints,
            questions=questions,
            asked=state.asked,
            screens=state.screens,
            unknown=unknown,
            general=general,
        )

    async def adecide(
        self,
        conversation: Sequence[PatientMessage | str],
        language: str = "en",
        ask: bool = True,
    ) -> TriageResult:
        """`decide` on the triage thread: off the event loop, one decision at a time."""
        return await TRIAGE.run(self.decide, conversation, language, ask)

    async def assess(
        self,
        conversation: Sequence[PatientMessage | str],
        language: str = "en",
        ask: bool = True,
    ) -> TriageResult:
        """Decide, then consult the model when the settings allow it."""
        return await self.consult(await self.adecide(conversation, language, ask), conversation)

    async def consult(
        self, result: TriageResult, conversation: Sequence[PatientMessage | str]
    ) -> TriageResult:
        """Let the LLM classifier add questions or raise the level; it never lowers it."""
        if self.vote is ModelVote.OFF or self.classifier is None:
            return result
        if result.level is TriageLevel.EMERGENCY:
            return result  # an emergency never waits for a model
        texts = [m.text for m in _as_messages(conversation)]
        outcome = await self.classifier.classify(texts, [h.rule_id for h in result.hits])
        result = result.model_copy(deep=True)
        result.model, result.model_error = outcome.result, outcome.error
        if outcome.result is None:
            logger.info("triage classifier gave no verdict: %s", outcome.error)
            return result
        suggested = [_MODEL_QUESTIONS.get(m.value, m.value) for m in outcome.result.missing]
        result.unknown += [q for q in suggested if q not in result.unknown]
        if result.questions:
            room = self.questions_per_round - len(result.questions)
            fresh = [q for q in suggested if q not in result.questions and q not in result.asked]
            result.questions += fresh[: max(room, 0)]
        if self.vote is ModelVote.RAISE and outcome.result.level.rank > result.level.rank:
            result.level, result.decided_by = outcome.result.level, "model"
        return result


def _merge(hits: list[RedFlagHit], more: list[RedFlagHit]) -> list[RedFlagHit]:
    by_rule = {h.rule_id: h for h in hits}
    for hit in more:
        if hit.rule_id in by_rule:
            by_rule[hit.rule_id].evidence += hit.evidence
        else:
            by_rule[hit.rule_id] = hit
    return sorted(by_rule.values(), key=lambda h: -h.level.rank)
