"""The red-flag interview: which questions to ask next, and what the patient answered.

Questions come from one catalogue (`questions.yaml`) with stable ids. The presenting complaints
pick them, red-flag screens first; a fact the patient already gave is never asked. Answers are
read in lay English and Chinese: "yes" to a screen is a finding that fires the screen's rule,
"no" screens it out, anything else leaves it open (and self-care stays out of reach).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field

from bot.triage.facts import PatientFacts
from bot.triage.lexicon import Patterns, PatternSet, TextScanner, Vocabulary

DEFAULT_QUESTIONS = Path(__file__).with_name("questions.yaml")
FALLBACK_COMPLAINT = "unwell"


class Question(BaseModel):
    """One catalogue question."""

    kind: Literal["fact", "screen", "history"]
    category: str
    text: dict[str, str]
    if_yes: str | None = None
    sex: Literal["male", "female"] | None = None
    # Free-text answers that mean yes / no to a screen, per language: a patient's answer is
    # compared with them by meaning (semantic.py) and by its words (`speaks_to`).
    yes_says: dict[str, list[str]] = Field(default_factory=dict)
    no_says: dict[str, list[str]] = Field(default_factory=dict)
    # A screen whose answer the patient would know (breathing, bleeding, consciousness): a
    # "not sure" is asked once more, in these simpler single-item words.
    again: dict[str, str] = Field(default_factory=dict)


class Complaint(BaseModel):
    """A presenting complaint: its words and its questions, most dangerous first."""

    words: Patterns = Field(default_factory=dict)
    ask: list[str]
    # The screen for this complaint's main danger: left unanswered ("not sure"), the level
    # cannot fall below urgent.
    main_danger: str | None = None
    screens_self_care: bool = Field(
        default=False, description="Its questions must be answered before self-care."
    )


class Catalogue(BaseModel):
    """The question catalogue file."""

    questions: dict[str, Question]
    denied_by: dict[str, list[str]] = Field(default_factory=dict)
    self_care_screens: list[str] = Field(default_factory=list)
    complaints: dict[str, Complaint]

    @classmethod
    def load(cls, path: Path = DEFAULT_QUESTIONS) -> Catalogue:
        """Read the catalogue and check that every id it uses is defined."""
        data = cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        used = [q for c in data.complaints.values() for q in c.ask] + list(data.denied_by)
        used += [c.main_danger for c in data.complaints.values() if c.main_danger]
        used += data.self_care_screens
        unknown = sorted({q for q in used if q not in data.questions})
        if unknown:
            raise ValueError(f"questions.yaml: unknown question ids {unknown}")
        if FALLBACK_COMPLAINT not in data.complaints:
            raise ValueError(f"questions.yaml: the {FALLBACK_COMPLAINT!r} complaint is missing")
        return data


class Answer(StrEnum):
    """A patient's answer to a yes/no question."""

    YES = "yes"
    NO = "no"
    UNSURE = "unsure"


_UNSURE = re.compile(
    r"^\s*(not sure|unsure|i'?m not sure|don'?t know|dont know|do not know|dunno|no idea|"
    r"maybe|possibly|perhaps|can'?t tell|hard to say|idk|not certain|"
    r"不确定|不知道|说不清|不清楚|可能|也许)",
    re.I,
)
_NO = re.compile(
    r"^\s*(no\b|nope|nah|naw|not really|not at all|none|never|neither|negative|n\b|"
    r"没有|没|无|不是|不会|不|否)",
    re.I,
)
_YES = re.compile(
    r"^\s*(yes|yeah|yep|yup|ya\b|yah|y\b|sure|definitely|correct|right|it is|he is|she is|"
    r"they are|i am|i have|he has|she has|they have|a bit|a little|kind of|sort of|slightly|"
    r"some|somewhat|sometimes|i think so|think so|affirmative|"
    r"是|有|对|嗯|会|好像有|有点|一点)",
    re.I,
)
# A yes that stands for itself whatever follows ("yes, mostly on the stairs"); the weaker
# openings ("it is", "a bit") are a yes only alone or about the screen ("It is mild", asked
# about breathing, is about something else).
_PLAIN_YES = re.compile(
    r"^\s*(yes|yeah|yep|yup|ya\b|yah|y\b|definitely|correct|i think so|think so|affirmative|"
    r"是的|是|有|对|嗯)",
    re.I,
)
# An answer that is only its yes/no/not-sure words (and a few of filler).
_BARE = re.compile(r"^\W*(?:[^\W\d_]+\W*){0,4}$")
_CONTENT = re.compile(r"[a-z]{3,}")
_CJK_PAIR = re.compile(r"(?=([\u3400-\u9fff]{2}))")
_FILLER = {
    "feel",
    "feels",
    "felt",
    "like",
    "really",
    "just",
    "bit",
    "get",
    "got",
    "very",
    "also",
    "now",
    "today",
    "think",
    "know",
    "thing",
    "things",
    "seems",
    "seem",
    "still",
    "lot",
    "little",
    "much",
    "well",
    "good",
    "bad",
    "thanks",
    "thank",
    "okay",
    "yes",
    "yeah",
}
# Words that only say yes, no or how sure: not what an answer is about.
_ANSWER_WORDS = {
    "yeah",
    "yep",
    "yup",
    "nope",
    "nah",
    "sure",
    "definitely",
    "maybe",
    "possibly",
    "perhaps",
    "dunno",
    "idea",
    "certain",
    "really",
    "bit",
    "kind",
    "sort",
    "slightly",
    "somewhat",
    "sometimes",
    "think",
    "correct",
    "right",
    "affirmative",
    "negative",
    "course",
}
# Words of degree or reassurance: they say how much, not what about.
_DEGREE = {"mild", "mildl", "sligh", "fine", "norma", "okay", "alrig", "bette", "settl", "prope"}
AGAIN = ".again"
_NUMBERED = re.compile(r"^\s*(?:\d+|[a-c])\s*[).:\-]\s*", re.I)
_NUMBER_MARKS = re.compile(r"(?:^|\s)\d\s*[.)、:：]\s*")
_SEPARATORS = re.compile(r"[;；，,/]|。")


def read_answer(part: str) -> Answer | None:
    """Read one yes/no/unsure answer; None when the words say neither."""
    part = _NUMBERED.sub("", part)
    if _UNSURE.match(part):
        return Answer.UNSURE
    if _NO.match(part):
        return Answer.NO
    if _YES.match(part):
        return Answer.YES
    return None


def plain_yes(part: str) -> bool:
    """Whether an answer opens with a yes that stands whatever follows."""
    return bool(_PLAIN_YES.match(_NUMBERED.sub("", part)))


def is_bare(part: str) -> bool:
    """Whether an answer is its yes/no words alone ("yeah a bit", "no not really"), with
    nothing after them that says what it is about ("It is mild" is about something)."""
    part = _NUMBERED.sub("", part).strip()
    if _CJK_PAIR.search(part):
        return len(part) <= 6
    lead = _UNSURE.match(part) or _NO.match(part) or _YES.match(part)
    rest = part[lead.end() :] if lead else part
    return bool(_BARE.match(rest)) and not content_words(rest)


def content_words(text: str) -> set[str]:
    """The words that say what an answer is about: stems of English words, Chinese pairs."""
    from spacy.lang.en.stop_words import STOP_WORDS

    words = {
        w[:5]
        for w in _CONTENT.findall(text.lower())
        if w not in STOP_WORDS and w not in _FILLER and w not in _ANSWER_WORDS
    }
    return words | {m.group(1) for m in _CJK_PAIR.finditer(text)}


def read_answers(text: str, asked: list[str]) -> dict[str, str]:
    """Map a reply to the questions asked just before it: one answer each, in order.

    One line per question (as the bot asks), or numbered answers, or answers separated by
    commas or semicolons, each starting with yes/no. A lone "no" answers every question of the
    round ("are any of these happening?"); so does a lone "yes" (the safe reading: each screen
    it confirms fires). Value questions (age, duration, temperature) keep the patient's own
    words, which facts.py reads.
    """
    if not asked:
        return {}
    text = text.strip()
    if len(asked) == 1:
        return {asked[0]: text}
    for parts in _splits(text):
        if len(parts) == len(asked):
            return dict(zip(asked, parts, strict=True))
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) == 1 and read_answer(text) is not None:
        return dict.fromkeys(asked, text)
    return {}


def _splits(text: str) -> Iterator[list[str]]:
    """Ways to cut a reply into answers, most explicit first."""
    yield [line.strip() for line in text.splitlines() if line.strip()]
    yield [p.strip() for p in _NUMBER_MARKS.split(text) if p.strip()]
    parts = [p.strip() for p in _SEPARATORS.split(text) if p.strip()]
    if all(read_answer(p) is not None for p in parts):
        yield parts


class InterviewState(BaseModel):
    """What the interview knows: screens answered, questions asked, complaints recognised."""

    complaints: list[str] = Field(default_factory=list)
    screens: dict[str, Answer] = Field(default_factory=dict)
    asked: list[str] = Field(default_factory=list)
    values: dict[str, str] = Field(default_factory=dict, description="fact id -> patient's words")


class Interview:
    """Choose the red-flag questions for a conversation and read the answers."""

    def __init__(self, catalogue: Catalogue | None = None) -> None:
        self.catalogue = catalogue or Catalogue.load()
        vocabulary = Vocabulary()
        self._screen_words: dict[str, tuple[set[str], set[str]]] = {}
        self._words = {
            name: PatternSet.of(c.words, vocabulary)
            for name, c in self.catalogue.complaints.items()
            if c.words
        }

    def question(self, qid: str) -> Question:
        """Return a catalogue question by id (`<id>.again`: the screen in simpler words)."""
        if qid.endswith(AGAIN):
            question = self.catalogue.questions[qid.removesuffix(AGAIN)]
            return question.model_copy(update={"text": question.again or question.text})
        return self.catalogue.questions[qid]

    def _vocabulary(self, qid: str) -> tuple[set[str], set[str]]:
        """A screen's words: of its danger (the question, and yes sentences' words its no
        sentences do not also use, like "tired"), and of its topic (all of them, less words
        of mere degree such as "mild" or "fine"). Read once per screen."""
        cached = self._screen_words.get(qid)
        if cached is None:
            question = self.catalogue.questions[qid]

            def words(sentences: Iterable[str]) -> set[str]:
                return set().union(*(content_words(s) for s in sentences))

            asked = words(question.text.values())
            danger = words(s for says in question.yes_says.values() for s in says)
            calm = words(s for says in question.no_says.values() for s in says)
            cached = (asked | (danger - calm), (asked | danger | calm) - _DEGREE)
            self._screen_words[qid] = cached
        return cached

    def speaks_to(self, qid: str, answer: str) -> bool:
        """Whether an answer talks about the danger the screen asks about: "It is mild" says
        nothing about breathing."""
        return bool(content_words(answer) & self._vocabulary(qid)[0])

    def about(self, qid: str, answer: str) -> bool:
        """Whether an answer is about the screen's topic at all (reassurance included)."""
        return bool(content_words(answer) & self._vocabulary(qid)[1])

    def retries(self, state: InterviewState) -> list[str]:
        """Screens the patient would know but answered "not sure": ask once more, simpler."""
        return [
            f"{qid}{AGAIN}"
            for qid, answer in state.screens.items()
            if answer is Answer.UNSURE
            and self.catalogue.questions[qid].again
            and f"{qid}{AGAIN}" not in state.asked
        ]

    def unresolved_dangers(self, state: InterviewState) -> list[str]:
        """Main-danger screens of the complaints still "not sure" after every chance."""
        out = []
        for name in state.complaints:
            qid = self.catalogue.complaints[name].main_danger
            if qid is None or state.screens.get(qid) is not Answer.UNSURE:
                continue
            if self.catalogue.questions[qid].again and f"{qid}{AGAIN}" not in state.asked:
                continue  # asked once more first
            out.append(qid)
        return list(dict.fromkeys(out))

    def complaints(self, texts: list[str], scanners: list[TextScanner] | None = None) -> list[str]:
        """Return the complaints the patient's words point to, most dangerous first."""
        scanners = scanners or [TextScanner(t.lower()) for t in texts]
        found = [
            name
            for name, patterns in self._words.items()
            if any(next(scanner.finditer(patterns), None) for scanner in scanners)
        ]
        return found or [FALLBACK_COMPLAINT]

    def known(
        self,
        qid: str,
        facts: PatientFacts,
        state: InterviewState,
        fired: set[str],
        denied: set[str],
        text: str,
    ) -> bool:
        """Whether a question is already answered by the conversation."""
        question = self.catalogue.questions[qid]
        if qid in state.asked or qid in state.screens:
            return True
        if question.sex is not None and facts.sex not in (None, question.sex):
            return True  # not for this patient: nothing to ask
        if question.kind == "screen":
            if question.if_yes in fired:
                return True
            return any(name in denied for name in self.catalogue.denied_by.get(qid, []))
        return _fact_known(qid, facts, text)

    def next_questions(
        self,
        candidates: list[str],
        facts: PatientFacts,
        state: InterviewState,
        fired: set[str],
        denied: set[str],
        text: str,
        limit: int,
    ) -> list[str]:
        """Pick up to `limit` questions not yet answered, in the complaints' order of danger.

        Each complaint lists its questions most dangerous first (for a feverish baby the age
        comes first: under three months, any fever is an emergency).
        """
        fresh = [
            q
            for q in dict.fromkeys(candidates)
            if not self.known(q, facts, state, fired, denied, text)
            and self.catalogue.questions[q].kind != "history"
        ]
        return fresh[:limit]

    def self_care_screens(self, complaints: list[str]) -> list[str]:
        """What must be screened out before any self-care: the general screens, and the
        questions of complaints marked `screens_self_care` ("feels very unwell")."""
        extra = [
            q
            for c in complaints
            if self.catalogue.complaints[c].screens_self_care
            for q in self.catalogue.complaints[c].ask
        ]
        return list(dict.fromkeys([*self.catalogue.self_care_screens, *extra]))

    def candidates(
        self, complaints: list[str], extra: list[str], emergency: set[str] | None = None
    ) -> list[str]:
        """The questions of the complaints, interleaved so each complaint's worst comes first.

        Screens for an emergency (`emergency`: rule ids) and each complaint's first question
        go before the rest; the general discriminators (the fallback complaint's: breathing,
        conscious level, ...) follow, so a short complaint list still reaches them.
        """
        lists = [self.catalogue.complaints[c].ask for c in complaints] + [extra]
        order: list[str] = []
        for depth in range(max((len(x) for x in lists), default=0)):
            for items in lists:
                if depth < len(items) and items[depth] not in order:
                    order.append(items[depth])
        first = {items[0] for items in lists if items}

        def rank(qid: str) -> int:
            if_yes = self.catalogue.questions[qid].if_yes
            return 0 if qid in first or (emergency and if_yes in emergency) else 1

        general = self.catalogue.complaints[FALLBACK_COMPLAINT].ask
        return sorted(order, key=rank) + [q for q in general if q not in order]

    def screened_out(
        self,
        qids: list[str],
        facts: PatientFacts,
        state: InterviewState,
        denied: set[str],
        text: str,
    ) -> bool:
        """Whether every one of these questions is answered, each screen with a "no"."""
        for qid in dict.fromkeys(qids):
            question = self.catalogue.questions[qid]
            if question.kind == "screen":
                answered_no = state.screens.get(qid) is Answer.NO
                stated_no = any(n in denied for n in self.catalogue.denied_by.get(qid, []))
                if not (answered_no or stated_no):
                    return False
            elif not (_fact_known(qid, facts, text) or qid in state.values):
                return False
        return True


_SUDDEN = re.compile(r"\b(sudden|suddenly|out of nowhere|all of a sudden|came on fast)|突然", re.I)
_COURSE = re.compile(r"\b(worse|worsening|better|improving|same|spreading)|加重|好转|越来越", re.I)
_SEVERITY = re.compile(
    r"\b(mild|moderate|severe|bad|terrible|worst|slight|agony|unbearable|\d+ ?(/|out of) ?10)\b|"
    r"轻|严重|剧烈",
    re.I,
)


def _fact_known(qid: str, facts: PatientFacts, text: str) -> bool:
    if qid == "age":
        return facts.age_stated
    if qid == "sex":
        return facts.sex is not None
    if qid == "pregnancy":
        outside = facts.age_years is not None and not 12 <= facts.age_years <= 55
        return facts.pregnant is not None or facts.sex == "male" or outside
    if qid == "duration":
        return facts.duration_days is not None
    if qid == "temperature":
        return facts.vitals.temperature_c is not None
    if qid == "onset":
        return bool(_SUDDEN.search(text))
    if qid == "course":
        return bool(_COURSE.search(text))
    if qid == "severity":
        return bool(_SEVERITY.search(text))
    return False
