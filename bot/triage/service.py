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
from bot.triage.interview import (
    AGAIN,
    Answer,
    Interview,
    InterviewState,
    is_bare,
    plain_yes,
    read_answer,
    read_answers,
)
from bot.triage.rules import FindingSet, TriageRules
from bot.triage.semantic import AnswerMeaning, SemanticMatcher
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
# Words of reassurance or denial in a free-text answer (the sentence model hardly sees them).
_REASSURING = re.compile(
    r"\b(fine|normal|normally|ok|okay|alright|all right|mild|mildly|slight|slightly|settled|"
    r"better|nothing( like( that)?)?|more of an?|properly|as usual|no problem|no trouble|still|"
    r"not (that |too |very |really )?(heavy|bad|severe|much|a lot|serious))\b|"
    r"正常|还好|挺好|没事",
    re.I,
)
_ANSWER_CHARS = 4_000
# Fired when a complaint's main danger stays "not sure" (questions.yaml `main_danger`).
NOT_RULED_OUT = "UR-DANGER-NOT-RULED-OUT"
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
            answers = read_answers(message.text, message.asked)
            if not answers and len(message.asked) > 1:
                # One paragraph for the whole round: each screen hears what it describes.
                for qid in message.asked:
                    if self.interview.question(qid).kind == "screen":
                        answer, evidence = self._screen_answer(qid, message.text, index, True)
                        self._record(qid, answer, evidence, language, state, answer_hits)
            for qid, said in answers.items():
                question = self.interview.question(qid)
                if question.kind == "screen":
                    answer, evidence = self._screen_answer(qid, said, index, False)
                    self._record(qid, answer, evidence, language, state, answer_hits)
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
                if evidence.finding not in found.present and not self._answered_otherwise(
                    evidence, messages, state
                ):
                    found.add(evidence)
            hits = _merge(self.rules.evaluate(found, facts, language), answer_hits)
        rule_level = self.rules.level(hits)
        general = bool(texts) and is_general_question(texts[-1]) and not hits
        return self._settle(hits, rule_level, facts, found, state, texts, general, ask, language)

    def _screen_answer(
        self, qid: str, said: str, index: int, whole: bool
    ) -> tuple[Answer | None, Evidence | None]:
        """What an answer says to a screen: yes in any words, no, not sure, or nothing.

        A described finding is a yes even after "no" or "not sure" ("not sure, but she went
        blank for a minute"): by meaning (the screen's yes sentences), or by the words of the
        screen's own rule. Otherwise its opening word decides ("no, just tired"); a bare
        "a bit" is a yes, but a description must speak to the screen: "It is mild", asked
        about breathing, is not a yes. `whole`: the reply answers a whole round at once, so
        only what it describes counts.
        """
        qid = qid.removesuffix(AGAIN)
        question = self.interview.question(qid)
        # An answer is read for what it says to the screen from its start; the whole of a
        # pasted record is still read for findings with the conversation.
        said = said[:_ANSWER_CHARS]
        meaning = AnswerMeaning()
        if self.semantic is not None:
            meaning = self.semantic.screen_answer(qid, said)
        said_evidence = Evidence(finding=qid, text=said, message=index, source="answer")
        reassuring = bool(_REASSURING.search(said))
        yes = meaning.yes
        if yes is not None and not (reassuring and meaning.no_score > (yes.similarity or 0.0)):
            # (In reassuring words, the yes clause must also beat the answer's best no.)
            return Answer.YES, yes.model_copy(update={"message": index})
        # The words of the screen's own rule, on their own ("she's been sick three times
        # since she hit her head" fires the head-injury rule).
        read = self.rules.findings([said])
        if question.if_yes and any(
            h.rule_id == question.if_yes
            for h in self.rules.evaluate(read, extract_facts([said]), "en")
        ):
            return Answer.YES, said_evidence
        # The screen's danger named only to be denied ("she hasn't hit her head").
        rule_findings = self.rules.findings_of.get(question.if_yes or "", set())
        denied = bool(rule_findings & read.denied) or any(
            name in read.denied for name in self.interview.catalogue.denied_by.get(qid, [])
        )
        if denied and not whole:
            return Answer.NO, None
        lead = read_answer(said)
        if lead is not None and (lead is not Answer.YES or is_bare(said) or plain_yes(said)):
            return lead, said_evidence if lead is Answer.YES else None
        if reassuring:
            # Reassurance ("a bit out of breath on the stairs but talks fine"): no when
            # closer to the screen's no sentences, otherwise not settled.
            margin = SemanticMatcher.ANSWER_MARGIN
            closer = meaning.no_score >= meaning.yes_score - margin or self.semantic is None
            if closer and self.interview.about(qid, said):
                return Answer.NO, None
            return (None if whole else Answer.UNSURE), None
        if whole:
            return None, None
        if self.interview.speaks_to(qid, said):
            # A description of the screen's topic with no reassurance in it is taken as the
            # danger: the safe reading ("she keeps nodding off mid-sentence").
            return Answer.YES, said_evidence
        return Answer.UNSURE, None

    def _answered_otherwise(
        self, evidence: Evidence, messages: list[PatientMessage], state: InterviewState
    ) -> bool:
        """Whether a match by meaning is in an answer to the screen for that very finding,
        which the screen's reading found not to be a yes: the answer's reading stands (the
        sentence model takes "tummy is soft" for "tummy is rock hard")."""
        asked = messages[evidence.message].asked
        for qid in asked:
            base = qid.removesuffix(AGAIN)
            question = self.interview.question(base)
            if question.kind != "screen" or state.screens.get(base) is Answer.YES:
                continue
            if evidence.finding in self.rules.findings_of.get(question.if_yes or "", set()):
                return True
        return False

    def _record(
        self,
        qid: str,
        answer: Answer | None,
        evidence: Evidence | None,
        language: str,
        state: InterviewState,
        hits: list[RedFlagHit],
    ) -> None:
        """Keep a screen's answer; a yes fires the screen's rule with its evidence."""
        if answer is None:
            return
        qid = qid.removesuffix(AGAIN)
        state.screens[qid] = answer
        if_yes = self.interview.question(qid).if_yes
        if answer is Answer.YES and if_yes:
            hits.append(self.rules.hit(if_yes, language, evidence))

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
        language: str = "en",
    ) -> TriageResult:
        """Pick the questions still worth asking, and hold self-care until it is screened."""
        fired = {h.rule_id for h in hits}
        text = "\n".join(texts)
        # A screen's `denied_by` may name a rule: denying any of its findings denies it.
        denied = set(found.denied) | {
            rule for rule, names in self.rules.findings_of.items() if names & found.denied
        }
        state.complaints = self.interview.complaints(texts, found.scanners)
        unresolved = self.interview.unresolved_dangers(state)
        if unresolved and rule_level.rank < TriageLevel.URGENT.rank:
            # A main danger the patient could not rule out keeps the level at urgent at least.
            evidence = [Evidence(finding=q, text="not sure", source="answer") for q in unresolved]
            floor = self.rules.hit(NOT_RULED_OUT, language)
            floor.evidence = evidence
            hits = [floor, *hits]
            fired = {h.rule_id for h in hits}
            rule_level = TriageLevel.URGENT
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
            # A "not sure" to a screen the patient would know is asked once more, first.
            retries = self.interview.retries(state)
            questions = retries + self.interview.next_questions(
                candidates, facts, state, fired, denied, text, self.questions_per_round
            )
            questions = questions[: self.questions_per_round]
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
