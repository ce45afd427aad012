"""ConText for patient messages: is a finding denied, past, hypothetical or someone else's?

medspaCy's ConText component does the work (cue matching, scope, termination, pruning), with
the cues of `context_rules.yaml`, written for patients' wording in English and Chinese. Only
the sentences around the findings are analysed, so the cost grows with the findings, not with
the length of the message; past a fixed budget the remaining findings count as present, the
safe side of a doubt.
"""

from __future__ import annotations

import bisect
import re
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

from bot import caches

DEFAULT_CONTEXT_RULES = Path(__file__).with_name("context_rules.yaml")
_HARD_BREAK = re.compile(r"[.!?\n;。！？；]+")
_CJK = re.compile(r"[\u3400-\u9fff]")
_DIGIT = re.compile(r"\d")
_LABEL = "FINDING"
_LIST_SPLIT = re.compile(r",|，|、|\bor\b|\bnor\b|\band\b|或|和", re.IGNORECASE)
_OR = re.compile(r"\b(or|nor)\b|或", re.IGNORECASE)
_STRONG_BREAK = re.compile(r"[.;!?\n。；！？]|\bbut\b|\bhowever\b|\bthough\b|但", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
# Lists of pertinent negatives ("no fever, no cough, the pain not radiating"): see
# `_feature_denied_in_list`.
_LIST_ITEM = re.compile(r"[^,，、;；]+")
_DENIAL_ITEM = re.compile(
    r"\s*(?:(?:no|not|nil|never|denies|denied|without|negative for)\b|没有|没|无|否认|未)", re.I
)
_OWNER = re.compile(r"\b(?:my|i|i'm|im|i've|ive|his|her|our)\b|我|他|她", re.I)
_FEATURE_NEGATION = re.compile(
    r"\b(?:not|never|isn't|isnt|aren't|arent|doesn't|doesnt|don't|dont|wasn't|wasnt|"
    r"didn't|didnt)\b|不|没",
    re.I,
)
# "not going away", "won't stop", "不停": the finding goes on, which is a report of it.
_GOES_ON = re.compile(
    r"\W*(?:go(?:ing|ne)? away|stop|stopp|settl|eas|improv|better|help|work|respond|shift|"
    r"budg|clear|let(?:ting)? up|subsid|reliev|control|manag|bear|停|止|退|见好|缓解|好转|消|减轻)",
    re.I,
)


class Flag(StrEnum):
    """What ConText says about a finding; POSSIBLE alone never removes one."""

    NEGATED = "negated"
    HISTORICAL = "historical"
    HYPOTHETICAL = "hypothetical"
    POSSIBLE = "possible"
    OTHER_PERSON = "other_person"
    GENERAL = "general_question"


SUPPRESSING = frozenset(
    {Flag.NEGATED, Flag.HISTORICAL, Flag.HYPOTHETICAL, Flag.OTHER_PERSON, Flag.GENERAL}
)
_CATEGORIES = {
    "NEGATED": Flag.NEGATED,
    "HISTORICAL": Flag.HISTORICAL,
    "HYPOTHETICAL": Flag.HYPOTHETICAL,
    "POSSIBLE": Flag.POSSIBLE,
    "OTHER_PERSON": Flag.OTHER_PERSON,
}

# A general question asks about symptoms, with no one in it and nothing happening now:
# "what are the signs of a stroke?". A person, a time or a count of time makes it a report.
_QUESTION_START = re.compile(
    r"^\s*(what|what's|whats|how|when|which|why|is|are|can|could|should|do|does|tell me)\b", re.I
)
_INFO_CUE = re.compile(
    r"\b(signs?|symptoms?|warning|causes?|mean|means|difference|recogni[sz]e|tell if|know if|"
    r"treat|treatment|prevent|first aid|what to do if|should (you|one|someone) do)\b|"
    r"症状|迹象|怎么办|如何|怎样",
    re.I,
)
_REPORTING = re.compile(
    r"\b(i|i'm|im|i've|ive|i'd|me|my|mine|we|our|us|he|she|his|her|him|they|their|them|mum|"
    r"mom|dad|father|mother|son|daughter|baby|wife|husband|brother|sister|friend|child|kid|"
    r"grandma|grandpa|grandad|granddad|nan|nanna|grandmother|grandfather|partner|someone here|"
    r"now|right now|currently|today|tonight|this morning|ago|since|started|began|"
    r"for (the )?(last |past )?(\d+|a|an|one|two|three|few|several) ?"
    r"(min|minute|hour|hr|day|week)s?)\b|"
    r"我|他|她|孩子|宝宝|爸|妈|现在|刚才|今天",
    re.I,
)


def is_general_question(text: str) -> bool:
    """Say whether a sentence asks about symptoms in general rather than reporting them."""
    stripped = text.strip()
    asks = stripped.endswith(("?", "？")) or bool(_QUESTION_START.match(stripped))
    return asks and bool(_INFO_CUE.search(stripped)) and not _REPORTING.search(stripped)


class _CueSet(BaseModel):
    category: str
    direction: str
    cues: list[str]
    max_scope: int | None = None
    stops_at_comma: bool = False


class _ContextFile(BaseModel):
    en: list[_CueSet] = Field(min_length=1)
    zh: list[_CueSet] = Field(min_length=1)


def _pipeline(language: str, cue_sets: list[_CueSet]) -> Any:
    # Imported here: spaCy and medspaCy take seconds to import, and only triage needs them.
    import spacy
    from medspacy.context import ConText, ConTextRule

    # medspaCy's regex matcher is empty here (every cue is a phrase): not worth a warning.
    warnings.filterwarnings("ignore", message=r"\[W036\]", category=UserWarning)

    nlp = spacy.blank(language)  # rule-based only: no statistical model, nothing downloaded
    nlp.add_pipe("sentencizer", config={"punct_chars": [".", "!", "?", "。", "！", "？", "\n"]})
    context: ConText = nlp.add_pipe(
        "medspacy_context",
        config={"rules": None, "span_attrs": None},
    )
    rules = []
    for cue_set in cue_sets:
        terminated_by = {"LIST_BREAK"} if cue_set.stops_at_comma else None
        for cue in cue_set.cues:
            rules.append(
                ConTextRule(
                    cue,
                    cue_set.category,
                    direction=cue_set.direction.upper(),
                    max_scope=cue_set.max_scope,
                    terminated_by=terminated_by,
                )
            )
    context.add(rules)
    return nlp


class ClinicalContext:
    """ConText for findings (character spans) in English or Chinese patient text."""

    # Windows analysed per text; a message with more distinct sentences holding findings is
    # rare (a pasted record) and its remaining findings count as present.
    MAX_WINDOWS = 48
    # Characters of a run-on sentence kept on each side of a finding.
    REACH = 300
    _CACHE_SIZE = 1024

    def __init__(self, path: Path = DEFAULT_CONTEXT_RULES) -> None:
        data = _ContextFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        self._nlp = {"en": _pipeline("en", data.en), "zh": _pipeline("zh", data.zh)}
        self.comma_bound = {
            cue.lower()
            for cue_set in data.en + data.zh
            if cue_set.stops_at_comma
            for cue in cue_set.cues
        }
        self._cache: OrderedDict[tuple[str, bool], Any] = OrderedDict()
        # Flags of a span at a place in a window: a repeated sentence costs a lookup.
        self._flag_cache: OrderedDict[tuple[str, bool, int, int, bool, bool], frozenset[Flag]]
        self._flag_cache = OrderedDict()
        caches.register(self)

    def clear_cache(self) -> None:
        """Forget the sentences read (a patient was erased); new dicts, as the embeddings do."""
        self._cache, self._flag_cache = OrderedDict(), OrderedDict()

    def read(self, text: str) -> ContextReading:
        """Start reading one text; findings are then flagged one by one, as asked."""
        return ContextReading(self, text)

    def flags(self, text: str, spans: Sequence[tuple[int, int]]) -> list[frozenset[Flag]]:
        """Return the ConText flags of each finding span (start, end) of `text`, in order."""
        reading = self.read(text)
        return [reading.flags(start, end) for start, end in spans]

    def clause_flags(self, text: str, spans: Sequence[tuple[int, int]]) -> list[frozenset[Flag]]:
        """Return the flags of whole clauses: every cue in a clause or reaching into it.

        A clause matched by meaning ("I don't have any chest pain" is close to "I have chest
        pain" for an embedding model) is flagged by any cue that touches it.
        """
        reading = self.read(text)
        return [reading.flags(start, end, clause=True) for start, end in spans]

    def _doc(self, window: str, chinese: bool) -> Any:
        """Run the pipeline over a window once; later findings in it reuse the result."""
        key = (window, chinese)
        doc = self._cache.get(key)
        if doc is not None:
            self._cache.move_to_end(key)
            return doc
        nlp = self._nlp["zh" if chinese else "en"]
        doc = nlp(window)
        self._cache[key] = doc
        if len(self._cache) > self._CACHE_SIZE:
            self._cache.popitem(last=False)
        return doc

    def cached(self, window: str, chinese: bool) -> bool:
        """Whether a window was analysed recently (costs nothing from a reading's budget)."""
        return (window, chinese) in self._cache

    def remember(
        self, key: tuple[str, bool, int, int, bool, bool], flags: frozenset[Flag] | None = None
    ) -> frozenset[Flag] | None:
        """Look up (or, with `flags`, store) the flags of a span in a window."""
        if flags is None:
            return self._flag_cache.get(key)
        self._flag_cache[key] = flags
        if len(self._flag_cache) > 8 * self._CACHE_SIZE:
            self._flag_cache.popitem(last=False)
        return flags


class ContextReading:
    """ConText over one text, window by window, within a budget of analysed windows."""

    def __init__(self, owner: ClinicalContext, text: str) -> None:
        self.owner, self.text = owner, text
        self._breaks = [m.end() for m in _HARD_BREAK.finditer(text)]
        # Cues are words, never numbers: "on day 3" and "on day 4" share one analysis.
        self._masked = _DIGIT.sub("0", text)
        self._budget = owner.MAX_WINDOWS
        # "what does it mean when a face droops? my husband's is doing it now": a question
        # in a message that reports someone, or something now, is about that report.
        self._reports = _REPORTING.search(text) is not None

    def _window(self, start: int, end: int) -> tuple[int, int]:
        i = bisect.bisect_right(self._breaks, start)
        low = self._breaks[i - 1] if i else 0
        high = self._breaks[i] if i < len(self._breaks) else len(self.text)
        reach = self.owner.REACH
        if high - low > 4 * reach:
            # A run-on sentence: a window around the finding, snapped so that findings
            # close together share it.
            low = max(low, (start - reach) // reach * reach)
            high = min(high, ((end + reach) // reach + 1) * reach)
        return low, high

    def flags(self, start: int, end: int, clause: bool = False) -> frozenset[Flag]:
        """Return the flags of the span (a finding, or with `clause` a whole clause)."""
        low, high = self._window(start, end)
        window = self._masked[low:high]
        chinese = bool(_CJK.search(self.text[start:end]))
        key = (window, chinese, start - low, end - low, clause, self._reports)
        known = self.owner.remember(key)
        if known is not None:
            return known
        if not self.owner.cached(window, chinese):
            if self._budget <= 0:
                return frozenset()  # over budget: the finding counts (the safe side)
            self._budget -= 1
        doc = self.owner._doc(window, chinese)
        target = doc.char_span(start - low, end - low, alignment_mode="expand")
        if target is None:
            return frozenset()
        graph = doc._.context_graph
        found = set()
        for modifier in graph.modifiers:
            flag = _CATEGORIES.get(modifier.category)
            if flag is None:
                continue
            span = (target.start, target.end)
            inside = _overlaps(modifier.modifier_span, span)
            if clause:
                touches = inside or _overlaps(modifier.scope_span, span)
            else:
                # ConText: a cue inside the finding ("can't" in "can't breathe") is part of
                # it, not a modifier of it.
                touches = not inside and _overlaps(modifier.scope_span, span)
            if touches:
                found.add(flag)
        if (
            not clause
            and Flag.NEGATED not in found
            and (self._or_list(doc, graph, target) or _feature_denied_in_list(doc, target))
        ):
            found.add(Flag.NEGATED)
        if not self._reports and is_general_question(doc[target.start].sent.text):
            found.add(Flag.GENERAL)
        return self.owner.remember(key, frozenset(found)) or frozenset()

    def _or_list(self, doc: Any, graph: Any, target: Any) -> bool:
        """Carry a bare "no" over a list closed by "or"/"nor": "no fever, cough or vomiting".

        A comma ends a bare negation's scope ("no fever, chest pain since lunch" reports the
        chest pain), except in a short list that "or" or "nor" closes, which is unambiguous.
        """
        sentence = doc[target.start].sent
        cues = [
            m
            for m in graph.modifiers
            if m.category == "NEGATED"
            and m.rule.literal.lower() in self.owner.comma_bound
            and sentence.start <= m.modifier_span[0]
            and m.modifier_span[1] <= target.start
        ]
        if not cues:
            return False
        cue = max(cues, key=lambda m: m.modifier_span[1])
        between = doc[cue.modifier_span[1] : target.start].text
        items = _LIST_SPLIT.split(between)
        sizes = [len(_WORD.findall(item)) for item in items]
        if items[-1].strip() or sizes[0] > 5 or any(n > 4 for n in sizes[1:]):
            return False
        rest = _STRONG_BREAK.split(doc[target.end : sentence.end].text)[0]
        return bool(_OR.search(between) or _OR.search(rest))


def _feature_denied_in_list(doc: Any, target: Any) -> bool:
    """Read "no fever, no cough, the chest pain not spreading anywhere" as a list of denials.

    In a list of pertinent negatives, an item that names a finding only to deny one of its
    features ("the pain not radiating", "胸痛不放射") is another denial, not a report. Only
    when most other items of the sentence are denials too, the patient does not claim the
    finding as theirs ("my chest pain isn't spreading" reports it), and the denied word is
    not about the finding going on ("not going away", "不停" report it). The complaint is
    still recognised, so its screening questions are asked.
    """
    sentence = doc[target.start].sent
    text, offset = sentence.text, sentence.start_char
    start, end = target.start_char - offset, target.end_char - offset
    items = [(m.start(), m.end()) for m in _LIST_ITEM.finditer(text)]
    own = next(((a, b) for a, b in items if a <= start and end <= b), None)
    others = [text[a:b] for a, b in items if (a, b) != own and text[a:b].strip()]
    if own is None or len(others) < 2:
        return False
    denials = sum(1 for item in others if _DENIAL_ITEM.match(item))
    if denials < 2 or 2 * denials < len(others):
        return False
    if _OWNER.search(text[own[0] : start]):
        return False
    cue = _FEATURE_NEGATION.search(text, end, own[1])
    return cue is not None and not _GOES_ON.match(text, cue.end(), own[1])


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]
