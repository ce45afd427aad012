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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from bot.models import Evidence
from bot.triage.context import SUPPRESSING

if TYPE_CHECKING:
    from bot.triage.rules import TriageRules

_CJK = re.compile(r"[\u3400-\u9fff]")
_BREAK = re.compile(
    r"[.!?\n;:。！？；：,，]+|\s(?:and|but|so|then|because|also|plus|although|though|while)\s",
    re.I,
)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_EXEMPLAR_VECTORS: dict[tuple[str, str, tuple[str, ...]], npt.NDArray[np.float32]] = {}
MAX_CHARS_DEFAULT = 4_000
logger = logging.getLogger(__name__)


class Embedder(Protocol):
    """What the matcher needs of an embedding model (LangChain's `Embeddings` has it)."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...


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
    MAX_CLAUSES = 32
    # Longer messages (pasted records) are read by the patterns alone: embedding them would
    # cost more than the whole decision is allowed.
    MAX_CHARS = MAX_CHARS_DEFAULT
    # A language is read when exemplars of one finding are this much closer to each other,
    # on average, than to other findings' exemplars.
    MIN_SEPARATION = 0.08

    def __init__(
        self,
        rules: TriageRules,
        embedder: Embedder,
        threshold: float = DEFAULT_THRESHOLD,
        max_clauses: int = MAX_CLAUSES,
        max_chars: int = MAX_CHARS,
        cache_dir: Path | None = None,
    ) -> None:
        self.cache_dir = cache_dir
        self.embedder, self.context = embedder, rules.context
        self.threshold, self.max_clauses, self.max_chars = threshold, max_clauses, max_chars
        self._labels = _exemplar_clauses(rules)
        self._matrix: npt.NDArray[np.float32] | None = None
        self.languages: set[bool] | None = None  # True: Chinese; set at warm-up

    def _exemplars(self) -> npt.NDArray[np.float32]:
        if self._matrix is None:
            texts = tuple(text for _, text, _ in self._labels)
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
            self._matrix = matrix
        return self._matrix

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
            matrix = self._exemplars()
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

    def find(self, texts: Sequence[str]) -> list[Evidence]:
        """Return the findings whose exemplars some clause means, best match per finding."""
        if not self._labels:
            return []
        readable = self._readable()
        clauses = [
            c for c in _clauses(texts, self.max_clauses, self.max_chars) if c.chinese in readable
        ]
        if not clauses:
            return []
        vectors = np.asarray(
            self.embedder.embed_documents([c.text for c in clauses]), dtype=np.float32
        )
        scores = vectors @ self._exemplars().T
        languages = np.array([zh for _, _, zh in self._labels])
        best: dict[str, Evidence] = {}
        candidates: list[tuple[_Clause, int, float]] = []
        for clause, row in zip(clauses, scores, strict=True):
            # A clause is compared with exemplars of its own language only.
            row = np.where(languages == clause.chinese, row, -1.0)
            j = int(row.argmax())
            if row[j] >= self.threshold:
                candidates.append((clause, j, float(row[j])))
        for clause, j, similarity in candidates:
            name, exemplar, _ = self._labels[j]
            (flags,) = self.context.clause_flags(
                texts[clause.message], [(clause.start, clause.end)]
            )
            if flags & SUPPRESSING:
                continue
            seen = best.get(name)
            if seen is None or (seen.similarity or 0.0) < similarity:
                best[name] = Evidence(
                    finding=name,
                    text=clause.text,
                    message=clause.message,
                    start=clause.start,
                    end=clause.end,
                    flags=sorted(flags),
                    source="semantic",
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


def _clauses(texts: Sequence[str], limit: int, max_chars: int = MAX_CHARS_DEFAULT) -> list[_Clause]:
    """Split messages into clauses worth embedding, newest message first, at most `limit`."""
    out: list[_Clause] = []
    for index in range(len(texts) - 1, -1, -1):
        text = texts[index]
        if len(text) > max_chars:
            continue
        start = 0
        for cut in [*_BREAK.finditer(text), None]:
            end = cut.start() if cut else len(text)
            piece = text[start:end]
            stripped = piece.strip()
            if stripped:
                offset = start + piece.index(stripped)
                chinese = bool(_CJK.search(stripped))
                size = len(stripped) if chinese else len(_WORD.findall(stripped))
                if (4 <= size <= 60) if chinese else (3 <= size <= 40):
                    out.append(_Clause(index, offset, offset + len(stripped), stripped, chinese))
                    if len(out) >= limit:
                        return out
            start = cut.end() if cut else len(text)
    return out
