"""Findings by meaning: patient clauses close to the lexicon's exemplar sentences.

Patients describe a red flag in words no pattern anticipated ("his arm just went dead on
him"). Each clause of their messages is embedded with the packaged MiniLM model (the one
retrieval already loads) and compared with the clinician-written exemplars of every lexicon
finding; a clause at or above the similarity threshold counts as that finding, unless ConText
finds a cue touching the clause (denied, past, hypothetical, someone else's, a general
question). The matched exemplar and its similarity are kept as evidence. Matching by meaning
only adds findings: it never removes one the patterns found, and never lowers a level.

A language is matched only if the model tells its exemplars apart: exemplars of one finding
must be clearly closer to each other than to other findings' exemplars. The packaged MiniLM
has almost no Chinese vocabulary (0.61 within a finding against 0.59 across findings; English:
0.36 against 0.20), so Chinese relies on the lexicon's patterns unless a multilingual model is
configured. Messages longer than
`max_chars` are left to the patterns, which read all of them.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from bot.models import Evidence, TriageLevel
from bot.triage.context import SUPPRESSING, Flag
from bot.triage.interview import Catalogue

if TYPE_CHECKING:
    from bot.triage.rules import TriageRules

_CJK = re.compile(r"[\u3400-\u9fff]")
_BREAK = re.compile(
    r"[.!?\n;:。！？；：,，]+|\s(?:and|but|so|then|because|also|plus|although|though|while)\s",
    re.I,
)
_SENTENCES = re.compile(r"[^.!?\n;。！？；]+")
_CJK_PAIR = re.compile(r"(?=([\u3400-\u9fff]{2}))")
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_EXEMPLAR_VECTORS: dict[tuple[str, str, tuple[str, ...]], npt.NDArray[np.float32]] = {}
MAX_CHARS_DEFAULT = 4_000
logger = logging.getLogger(__name__)


class Embedder(Protocol):
    """What the matcher needs of an embedding model (LangChain's `Embeddings` has it)."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...


@dataclass(frozen=True)
class Calibration:
    """How a criterion's threshold was chosen (reported by `carebot eval criteria`)."""

    threshold: float
    closest_near_miss: float
    recall: float
    says: int
    near_misses: int


@dataclass
class AnswerMeaning:
    """What a free-text answer means to one screen: a yes clause, and the best scores."""

    yes: Evidence | None = None
    yes_score: float = -1.0
    no_score: float = -1.0


@dataclass(frozen=True)
class _Clause:
    message: int
    start: int
    end: int
    text: str
    chinese: bool


class SemanticMatcher:
    """Match clauses of patient messages to red-flag exemplars by cosine similarity."""

    # Chosen on the team's dev data (docs/triage.md: 0.70 to 0.82 swept): the lowest value
    # that adds findings without raising over-triage of the dev set's non-emergencies.
    DEFAULT_THRESHOLD = 0.75
    # Clauses embedded per decision, newest message first.
    MAX_CLAUSES = 48
    # Longer messages (pasted records) are read by the patterns alone: embedding them would
    # cost more than the whole decision is allowed.
    MAX_CHARS = MAX_CHARS_DEFAULT
    # A language is read when exemplars of one finding are this much closer to each other,
    # on average, than to other findings' exemplars.
    MIN_SEPARATION = 0.08
    # Guideline criteria (criteria.py): each threshold sits this far above the criterion's
    # closest near miss, and never below the floor.
    CRITERION_FLOOR = 0.75
    CRITERION_MARGIN = 0.02
    # A free-text answer to a screen means yes (or no) when one of its clauses is this close to
    # one of the screen's yes (no) sentences, and closer to them than to the other kind.
    ANSWER_THRESHOLD = 0.7
    ANSWER_MARGIN = 0.03
    # A criterion sentence half of whose words the patient never used matches only this close.
    UNSAID_SIMILARITY = 0.9
    # Clause vectors kept between decisions: a conversation is re-read at every turn.
    CACHED_VECTORS = 4096

    def __init__(
        self,
        rules: TriageRules,
        embedder: Embedder,
        threshold: float = DEFAULT_THRESHOLD,
        max_clauses: int = MAX_CLAUSES,
        max_chars: int = MAX_CHARS,
        cache_dir: Path | None = None,
        catalogue: Catalogue | None = None,
    ) -> None:
        self.cache_dir = cache_dir
        self.embedder, self.context = embedder, rules.context
        self.threshold, self.max_clauses, self.max_chars = threshold, max_clauses, max_chars
        self._labels = _exemplar_clauses(rules) + _criteria_labels(rules)
        # Near misses are embedded with the labels but never matched: they set thresholds.
        self._near = _near_misses(rules)
        # What answers to each screen mean: (question id, yes?, sentence, Chinese?).
        self._answers = _answer_labels(catalogue or Catalogue.load())
        self._criteria = rules.criteria
        self._matrix: npt.NDArray[np.float32] | None = None
        self._answer_matrix: npt.NDArray[np.float32] | None = None
        self._thresholds: npt.NDArray[np.float32] | None = None
        self.calibration: dict[str, Calibration] = {}
        self._vectors: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self.languages: set[bool] | None = None  # True: Chinese; set at warm-up

    def _exemplars(self) -> npt.NDArray[np.float32]:
        if self._matrix is None:
            texts = (
                tuple(text for _, text, _ in self._labels)
                + tuple(t for _, t, _ in self._near)
                + tuple(t for _, _, t, _ in self._answers)
            )
            # Exemplars are the same for every service built on the same model (one per test
            # runtime, one per worker): embed them once per model and precision.
            model = (
                getattr(self.embedder, "model_path", None),
                getattr(self.embedder, "bf16", None),
            )
            key = (type(self.embedder).__name__, repr(model), texts)
            matrix = _EXEMPLAR_VECTORS.get(key)
            if matrix is None:
                matrix = self._load_or_embed(key)
                _EXEMPLAR_VECTORS[key] = matrix
            # Labels, then near misses (a class of their own: "none of these"), then answers.
            self._matrix = matrix[: len(self._labels) + len(self._near)]
            self._answer_matrix = matrix[len(matrix) - len(self._answers) :]
            self._thresholds = self._calibrate(self._matrix)
        return self._matrix

    def _calibrate(self, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Per-label thresholds: the lexicon's global one; each criterion its own.

        A clause counts as the finding of its nearest exemplar (near misses are exemplars of
        nothing). On the calibration set (every exemplar and near miss, each matched to its
        nearest other sentence), a criterion's threshold sits just above the closest of its
        own near misses, or of a sentence two or more levels less urgent, that would be
        matched to it, and never below CRITERION_FLOOR. Its recall there (its own
        sentences matched to a criterion of its level or above, at the threshold) is recorded
        in `calibration` and reported by `carebot eval criteria`.
        """
        labels, near = self._labels, self._near
        thresholds = np.full(len(labels) + len(near), self.threshold, dtype=np.float32)
        thresholds[len(labels) :] = 2.0  # a near miss never fires
        if not self._criteria:
            return thresholds
        rank = {c.finding: c.spec.level.rank for c in self._criteria.values()}
        levels = np.array(
            [rank.get(name, TriageLevel.EMERGENCY.rank) for name, _, _ in labels] + [-1] * len(near)
        )
        owners = np.array([name for name, _, _ in labels] + [""] * len(near), dtype=object)
        near_of = np.array([""] * len(labels) + [name for name, _, _ in near], dtype=object)
        chinese = np.array([zh for _, _, zh in labels] + [zh for _, _, zh in near])
        texts = [text for _, text, _ in labels] + [text for _, text, _ in near]
        nearest = np.zeros(len(matrix), dtype=np.int64)
        closeness = np.zeros(len(matrix), dtype=np.float32)
        for start in range(0, len(matrix), 512):
            block = matrix[start : start + 512] @ matrix.T
            block[np.arange(len(block)), np.arange(start, start + len(block))] = -1.0
            block[chinese[start : start + 512, None] != chinese[None, :]] = -1.0
            nearest[start : start + len(block)] = block.argmax(axis=1)
            closeness[start : start + len(block)] = block.max(axis=1)
        for rule_id, criterion in self._criteria.items():
            own = np.nonzero(owners == criterion.finding)[0]
            if not len(own):
                continue
            level = criterion.spec.level.rank
            matched_here = owners[nearest] == criterion.finding
            # What must not be read as this criterion: its own near misses, and sentences two
            # or more levels less urgent. Mistaking the next level down for it (urgent for
            # emergency) is the safer error, and tolerated.
            wrong = (near_of == criterion.finding) | (levels < level - 1)
            # An intruder of the opposite polarity ("a rash that fades when pressed") is told
            # apart at matching time (`same_polarity`), whatever the model's similarity.
            intruders = [
                i
                for i in np.nonzero(matched_here & wrong)[0]
                if same_polarity(texts[i], texts[nearest[i]])
            ]
            closest = float(closeness[intruders].max()) if intruders else 0.0
            threshold = max(closest + self.CRITERION_MARGIN, self.CRITERION_FLOOR)
            found = (levels[nearest[own]] >= level) & (closeness[own] >= threshold)
            thresholds[own] = threshold
            self.calibration[rule_id] = Calibration(
                threshold=round(threshold, 4),
                closest_near_miss=round(closest, 4),
                recall=round(float(found.mean()), 4),
                says=len(own),
                near_misses=len(intruders),
            )
        return thresholds

    def _load_or_embed(self, key: tuple[str, str, tuple[str, ...]]) -> npt.NDArray[np.float32]:
        """Embed the exemplars, or read them from the data folder if this model did before."""
        texts = key[2]
        digest = hashlib.sha256(repr(key).encode("utf-8")).hexdigest()[:16]
        path = self.cache_dir / f"triage-exemplars-{digest}.npy" if self.cache_dir else None
        if path is not None and path.exists():
            try:
                cached: npt.NDArray[np.float32] = np.load(path)
                if cached.shape[0] == len(texts):
                    return cached
            except (OSError, ValueError):
                logger.warning("triage exemplar cache unreadable; embedding again")
        vectors = self.embedder.embed_documents(list(texts))
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, matrix)
            except OSError:
                logger.warning("triage exemplar cache not written")
        return matrix

    def warm_up(self) -> None:
        """Embed the exemplars now rather than at the first message."""
        self._readable()

    def _readable(self) -> set[bool]:
        """The languages (Chinese or not) whose exemplars the model tells apart."""
        if self.languages is None:
            matrix = self._exemplars()[: len(self._labels)]
            names = np.array([name for name, _, _ in self._labels])
            zh = np.array([chinese for _, _, chinese in self._labels])
            readable = set()
            for chinese in (False, True):
                rows = matrix[zh == chinese]
                if len(rows) < 2:
                    continue
                scores = rows @ rows.T
                group = names[zh == chinese]
                unrelated = group[:, None] != group[None, :]
                same = ~unrelated & ~np.eye(len(group), dtype=bool)
                if unrelated.any() and same.any():
                    separation = float(scores[same].mean() - scores[unrelated].mean())
                else:
                    separation = 0.0
                if separation >= self.MIN_SEPARATION:
                    readable.add(chinese)
                else:
                    logger.warning(
                        "triage: the embedding model cannot tell %s exemplars apart; "
                        "that language is matched by the lexicon's patterns only",
                        "Chinese" if chinese else "non-Chinese",
                    )
            self.languages = readable
        return self.languages

    def _embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Embed clauses, reusing vectors of clauses seen in earlier turns."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            fresh = np.asarray(self.embedder.embed_documents(missing), dtype=np.float32)
            for text, vector in zip(missing, fresh.reshape(len(missing), -1), strict=True):
                self._vectors[text] = vector
        for text in texts:
            self._vectors.move_to_end(text)
        while len(self._vectors) > self.CACHED_VECTORS:
            self._vectors.popitem(last=False)
        return np.stack([self._vectors[t] for t in texts])

    def screen_answer(self, qid: str, text: str) -> AnswerMeaning:
        """How close a free-text answer comes to a screen's yes and no sentences.

        Each clause of the answer is compared with the screen's sentences (questions.yaml).
        A clause is a yes when it reaches ANSWER_THRESHOLD against a yes sentence, comes
        clearly closer to the yes than to the no sentences, and ConText does not read it as past,
        supposed or someone else's. The sentence model hardly sees negation ("she's been sick"
        is as close to "she hasn't been sick"), so the no side is only a score: the service
        weighs it with the answer's words.
        """
        readable = self._readable()
        units = [c for c in _clauses([text], 16, self.max_chars) if c.chinese in readable]
        if not units:
            return AnswerMeaning()
        self._exemplars()
        assert self._answer_matrix is not None
        languages = {u.chinese for u in units}
        rows = [i for i, (q, _, _, zh) in enumerate(self._answers) if q == qid and zh in languages]
        yes = np.array([self._answers[i][1] for i in rows], dtype=bool)
        if not yes.any():
            return AnswerMeaning()
        scores = self._embed([u.text for u in units]) @ self._answer_matrix[rows].T
        yes_scores = scores[:, yes].max(axis=1)
        no_scores = scores[:, ~yes].max(axis=1) if (~yes).any() else np.full(len(units), -1.0)
        meaning = AnswerMeaning(yes_score=float(yes_scores.max()), no_score=float(no_scores.max()))
        for u in np.argsort(-yes_scores):
            unit, similarity = units[int(u)], float(yes_scores[u])
            if similarity < self.ANSWER_THRESHOLD:
                break
            if similarity < no_scores[u] + self.ANSWER_MARGIN:
                continue  # as close to a no ("tummy is soft" ~ "tummy is rock hard")
            j = int(np.argmax(np.where(yes, scores[u], -1.0)))
            exemplar = self._answers[rows[j]][2]
            if not same_polarity(unit.text, exemplar):
                continue  # "her tummy isn't swollen" is not "her tummy is swollen"
            (flags,) = self.context.clause_flags(text, [(unit.start, unit.end)])
            # A negation the exemplar shares is part of the finding ("the words won't come
            # out"); otherwise ConText's reading stands.
            if flags & SUPPRESSING - negation_within(unit.text, exemplar):
                continue
            meaning.yes = Evidence(
                finding=qid,
                text=unit.text,
                start=unit.start,
                end=unit.end,
                flags=sorted(flags),
                source="answer",
                exemplar=exemplar,
                similarity=round(similarity, 4),
            )
            break
        return meaning

    def find(self, texts: Sequence[str]) -> list[Evidence]:
        """Return the findings whose exemplars some clause means, best match per finding.

        Each clause (and each sentence of several clauses: "chest pain with sweating" may
        span two) is compared with every exemplar of its language; it counts as every finding
        one of whose exemplars it reaches at that exemplar's threshold.
        """
        if not self._labels:
            return []
        readable = self._readable()
        clauses = [
            c for c in _clauses(texts, self.max_clauses, self.max_chars) if c.chinese in readable
        ]
        if not clauses:
            return []
        scores = self._embed([c.text for c in clauses]) @ self._exemplars().T
        assert self._thresholds is not None
        chinese = np.array([zh for _, _, zh in self._labels] + [zh for _, _, zh in self._near])
        # A clause is compared with exemplars of its own language only.
        scores[chinese[None, :] != np.array([c.chinese for c in clauses])[:, None]] = -1.0
        best: dict[str, Evidence] = {}
        said = _words("\n".join(texts))
        for row, clause in enumerate(clauses):
            # The clause means what its nearest exemplar means (a near miss: nothing).
            j = int(scores[row].argmax())
            similarity = float(scores[row, j])
            if j >= len(self._labels) or similarity < self._thresholds[j]:
                continue
            name, exemplar, _ = self._labels[j]
            if name.startswith("criterion:") and similarity < self.UNSAID_SIMILARITY:
                # "I have chest pain" is close to "chest pain spreading into my back", but
                # half of that criterion was never said: such a match must be near-verbatim.
                words = _words(exemplar)
                if words and len(words - said) * 2 >= len(words):
                    continue
            seen = best.get(name)
            if seen is not None and (seen.similarity or 0.0) >= similarity:
                continue
            if not same_polarity(clause.text, exemplar):
                continue  # "she's making sense" is not "she's making no sense"
            (flags,) = self.context.clause_flags(
                texts[clause.message], [(clause.start, clause.end)]
            )
            if flags & SUPPRESSING - negation_within(clause.text, exemplar):
                continue
            best[name] = Evidence(
                finding=name,
                text=clause.text,
                message=clause.message,
                start=clause.start,
                end=clause.end,
                flags=sorted(flags),
                source="guideline" if name.startswith("criterion:") else "semantic",
                exemplar=exemplar,
                similarity=round(similarity, 4),
            )
        return list(best.values())


def _exemplar_clauses(rules: TriageRules) -> list[tuple[str, str, bool]]:
    """The exemplars' clauses that the patterns themselves read as their finding.

    Messages are compared clause by clause, so exemplars are too, and a clause stands for its
    finding only if it carries it alone: "my calf is swollen" is half of a clot in the lung's
    exemplar, not the finding; "I'm coughing up blood and can't catch my breath" is.
    """
    labels: list[tuple[str, str, bool]] = []
    for name, finding in rules.lexicon.findings.items():
        for language, sentences in finding.exemplars.items():
            for sentence in sentences:
                for clause in _clauses([sentence], 8, len(sentence)):
                    if name in rules.findings([clause.text]).present:
                        labels.append((name, clause.text, language == "zh"))
    return list(dict.fromkeys(labels))


_NEGATION = re.compile(
    r"\b(no|not|never|nothing|none|nobody|without|cannot|cant|wont|dont|doesnt|isnt|hasnt|"
    r"havent|didnt|wasnt|couldnt|wouldnt|arent|aint)\b|n't|没|不|无|未",
    re.I,
)
_CALM = re.compile(
    r"\b(fine|normal|normally|ok|okay|alright|all right|mild|mildly|settled|better)\b|正常|还好",
    re.I,
)


# An answer's opening yes or no is not part of what the clause says.
_LEAD = re.compile(r"^\W*(no|nope|nah|yes|yeah|yep|not really)\b\W*", re.I)
# Words that soften a finding: "breathing a bit faster" is not "breathing really fast".
_SOFTENED = re.compile(
    r"\b(a (little )?bit|a little|slightly|mild|mildly|a touch|kind of|sort of|ish)\b|有点|一点",
    re.I,
)


# A negated ending is a finding going on, not a denial: "won't stop", "not going away".
_PERSISTING = re.compile(
    r"\b([a-z]*n'?t|not|cannot|never|will not|does not|has not|have not|is not)"
    r" (stop|stopped|stopping|go away|gone away|going away|ease|eased|easing|settle|settled|"
    r"shift|shifted|get better|got better|getting better|improve|improved|improving|clear|cleared)"
    r"\b|non-?stop|不停|停不下来|止不住",
    re.I,
)


_FUNCTION_WORDS = frozenset(
    [
        "the",
        "and",
        "you",
        "your",
        "have",
        "has",
        "had",
        "been",
        "with",
        "for",
        "into",
        "from",
        "that",
        "this",
        "there",
        "they",
        "she",
        "her",
        "his",
        "him",
        "its",
        "are",
        "was",
        "were",
        "not",
        "but",
        "all",
        "any",
        "can",
        "get",
        "got",
        "just",
        "now",
        "very",
        "really",
        "like",
        "feel",
        "feels",
        "felt",
        "what",
        "when",
        "where",
        "who",
        "how",
        "our",
        "out",
        "off",
        "too",
        "also",
        "some",
        "more",
        "much",
        "than",
        "then",
        "them",
        "one",
        "i'm",
        "i've",
        "it's",
        "he's",
        "she's",
        "won't",
        "can't",
        "don't",
    ]
)
_LETTERS = re.compile(r"[a-z][a-z']+")


def _words(text: str) -> set[str]:
    """Word stems that carry meaning (spaCy's stop words include "back" and "side")."""
    return {
        w[:5] for w in _LETTERS.findall(text.lower()) if len(w) >= 3 and w not in _FUNCTION_WORDS
    } | {m.group(1) for m in _CJK_PAIR.finditer(text)}


def _negated(text: str) -> bool:
    return bool(_NEGATION.search(_PERSISTING.sub(" ", _LEAD.sub("", text))))


def negation_within(clause: str, exemplar: str) -> set[str]:
    """ConText flags that the clause's own words explain: a negation the matched exemplar
    shares ("I can't catch my breath") or one that says it goes on ("have not stopped").
    A negation from outside the clause ("no fever, chest pain or cough") still counts."""
    own = _NEGATION.search(_LEAD.sub("", clause))
    if own and (_negated(exemplar) or not _negated(clause)):
        return {Flag.NEGATED}
    return set()


def same_polarity(clause: str, exemplar: str) -> bool:
    """Whether a clause and the exemplar it is close to say the same thing, not its opposite.

    Sentence models barely see negation ("she's making sense" scores 0.91 against "she's
    making no sense") or degree, so a match counts only when both are negated or neither is,
    and a softened clause ("breathing a bit faster") or one of reassurance ("my neck is
    fine") never stands for a danger that is neither.
    """
    if _negated(clause) != _negated(exemplar):
        return False
    if _SOFTENED.search(clause) and not _SOFTENED.search(exemplar):
        return False
    return not (_CALM.search(clause) and not _CALM.search(exemplar))


def _answer_labels(catalogue: Catalogue) -> list[tuple[str, bool, str, bool]]:
    return [
        (qid, yes, sentence, language == "zh")
        for qid, question in catalogue.questions.items()
        for yes, says in ((True, question.yes_says), (False, question.no_says))
        for language, sentences in says.items()
        for sentence in sentences
    ]


def _criteria_labels(rules: TriageRules) -> list[tuple[str, str, bool]]:
    """Each guideline criterion's `says` sentences, whole: each is one finding as authored."""
    return list(
        dict.fromkeys(
            (c.finding, say, c.language == "zh")
            for c in rules.criteria.values()
            for say in c.spec.says
        )
    )


def _near_misses(rules: TriageRules) -> list[tuple[str, str, bool]]:
    return [
        (c.finding, text, c.language == "zh")
        for c in rules.criteria.values()
        for text in c.spec.near_misses
    ]


def _clauses(texts: Sequence[str], limit: int, max_chars: int = MAX_CHARS_DEFAULT) -> list[_Clause]:
    """Split messages into units worth embedding, newest message first, at most `limit`.

    The units are clauses, and each sentence of several clauses as a whole ("chest pain,
    and I'm sweating" is one finding in two clauses).
    """
    out: list[_Clause] = []
    for index in range(len(texts) - 1, -1, -1):
        text = texts[index]
        if len(text) > max_chars:
            continue
        for sentence in _SENTENCES.finditer(text):
            parts = _split(text, sentence.start(), sentence.end(), index)
            if len(parts) > 1:
                parts.append(_unit(text, sentence.start(), sentence.end(), index))
            for part in parts:
                if part is not None:
                    out.append(part)
                    if len(out) >= limit:
                        return out
    return out


def _split(text: str, begin: int, finish: int, index: int) -> list[_Clause | None]:
    """The clauses of the sentence text[begin:finish]."""
    units: list[_Clause | None] = []
    start = begin
    for cut in [*_BREAK.finditer(text, begin, finish), None]:
        end = cut.start() if cut else finish
        units.append(_unit(text, start, end, index))
        start = cut.end() if cut else finish
    return units


def _unit(text: str, start: int, end: int, index: int) -> _Clause | None:
    """The stripped piece text[start:end] as a unit, or None when too short or too long."""
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return None
    offset = start + piece.index(stripped)
    chinese = bool(_CJK.search(stripped))
    size = len(stripped) if chinese else len(_WORD.findall(stripped))
    if not ((4 <= size <= 60) if chinese else (3 <= size <= 40)):
        return None
    return _Clause(index, offset, offset + len(stripped), stripped, chinese)
