"""The lexical side of retrieval: BM25 (bm25s) over English stems and Chinese bigrams."""

from __future__ import annotations

import json
import re
from pathlib import Path

import bm25s
import numpy as np
import numpy.typing as npt

_TOKEN = re.compile(r"[a-z0-9]+|[\u3400-\u9fff]+")
_STOP = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "so",
        "that",
        "the",
        "their",
        "there",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
        "should",
        "could",
        "would",
        "am",
        "been",
        "being",
        "get",
        "got",
        "since",
        "yesterday",
        "today",
    }
)


def _stem(word: str) -> str:
    # A light suffix strip: enough that "fevers"/"fever" and "coughing"/"cough" meet.
    for suffix in ("ing", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def tokenize(text: str) -> list[str]:
    """Return index terms: stemmed English words, and bigrams of Chinese runs."""
    terms: list[str] = []
    for run in _TOKEN.findall(text.lower()):
        if "\u3400" <= run[0] <= "\u9fff":
            terms.extend(run[i : i + 2] for i in range(max(1, len(run) - 1)))
        elif run not in _STOP:
            terms.append(_stem(run))
    return terms


class LexicalIndex:
    """BM25 over chunk texts, saved beside the dense index and rebuilt when chunks change."""

    def __init__(self, ids: list[str], texts: list[str]) -> None:
        self.ids = ids
        self._bm25 = bm25s.BM25(k1=1.2, b=0.75)
        tokens = [tokenize(t) or [""] for t in texts]
        if ids:
            self._bm25.index(tokens, show_progress=False)
        self._vocab: dict[str, int] = dict(self._bm25.vocab_dict or {}) if ids else {}
        self._masks: dict[frozenset[str], npt.NDArray[np.float32]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def search(
        self, query: str, k: int, allowed: frozenset[str] | None = None
    ) -> list[tuple[str, float]]:
        """Return up to `k` (chunk id, BM25 score) pairs, best first; zero scores dropped."""
        terms = [t for t in dict.fromkeys(tokenize(query)) if t in self._vocab]
        if not terms or not self.ids:
            return []
        docs, scores = self._bm25.retrieve(
            [terms],
            k=min(k, len(self.ids)),
            show_progress=False,
            weight_mask=self._mask(allowed),
            n_threads=1,
        )
        return [
            (self.ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0
        ]

    def _mask(self, allowed: frozenset[str] | None) -> npt.NDArray[np.float32] | None:
        """Return the 0/1 weight per chunk for a filter, kept for the next query with it."""
        if allowed is None:
            return None
        if allowed not in self._masks:
            if len(self._masks) >= 16:  # a few languages and source sets in practice
                self._masks.clear()
            self._masks[allowed] = np.array([i in allowed for i in self.ids], dtype=np.float32)
        return self._masks[allowed]

    def save(self, folder: Path, generation: str) -> None:
        """Write the index and the generation (a digest of the chunk ids) it was built from."""
        folder.mkdir(parents=True, exist_ok=True)
        if self.ids:
            self._bm25.save(str(folder / "bm25"))
        (folder / "ids.json").write_text(
            json.dumps({"generation": generation, "ids": self.ids}), encoding="utf-8"
        )

    @classmethod
    def load(cls, folder: Path, generation: str) -> LexicalIndex | None:
        """Return the saved index if it was built from `generation`, else None."""
        try:
            saved = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
            if saved.get("generation") != generation:
                return None
            index = cls([], [])
            index.ids = list(saved["ids"])
            if index.ids:
                index._bm25 = bm25s.BM25.load(str(folder / "bm25"))
                index._vocab = dict(index._bm25.vocab_dict or {})
            return index
        except (OSError, ValueError, KeyError):
            return None
