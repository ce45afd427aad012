"""A small BM25 index over passages: English words and Chinese character bigrams."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

from rag.pages import Passage

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


@dataclass(frozen=True)
class Scored:
    """A passage with its retrieval score."""

    passage: Passage
    score: float


class _Field:
    """BM25 statistics of one text field across all passages."""

    def __init__(self, texts: list[str], k1: float, b: float) -> None:
        self.k1, self.b = k1, b
        self.tf = [Counter(tokenize(t)) for t in texts]
        self.len = [sum(tf.values()) for tf in self.tf]
        self.avg = (sum(self.len) / len(self.len)) if self.len else 0.0
        df: Counter[str] = Counter(t for tf in self.tf for t in tf)
        n = len(texts)
        self.idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}

    def score(self, i: int, terms: set[str]) -> float:
        tf, total = self.tf[i], 0.0
        for term in terms & tf.keys():
            f = tf[term]
            norm = f + self.k1 * (1 - self.b + self.b * self.len[i] / max(self.avg, 1e-9))
            total += self.idf[term] * f * (self.k1 + 1) / norm
        return total


class BM25Index:
    """BM25 over passage text plus a weighted title field (titles name the topic)."""

    def __init__(
        self, passages: list[Passage], k1: float = 1.5, b: float = 0.75, title_weight: float = 2.0
    ) -> None:
        self.passages = passages
        self.title_weight = title_weight
        self._body = _Field([f"{p.section} {p.text}" for p in passages], k1, b)
        self._title = _Field([p.title for p in passages], k1, b)

    def search(self, query: str, k: int = 4) -> list[Scored]:
        """Return the `k` best passages for `query`, best first (zero scores dropped)."""
        terms = set(tokenize(query))
        scored = []
        for i, passage in enumerate(self.passages):
            score = self._body.score(i, terms) + self.title_weight * self._title.score(i, terms)
            if score > 0:
                scored.append(Scored(passage, score))
        scored.sort(key=lambda s: -s.score)
        return scored[:k]
