"""Hybrid retrieval: dense and BM25 candidates fused by reciprocal rank, then MMR and a floor.

Reciprocal rank fusion (Cormack et al., SIGIR 2009) needs no score calibration between the two
retrievers. Whether anything relevant was found is decided on an absolute scale instead: the
cosine similarity between the question and a chunk, which does not depend on the index size.
"""

from __future__ import annotations

import re
import time

import numpy as np
import numpy.typing as npt
from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, Field

from rag.chunking import Chunk
from rag.index import GuidelineIndex

_LETTER = re.compile(r"[^\W\d_]")


class Hit(BaseModel):
    """A retrieved chunk with its scores."""

    chunk: Chunk
    score: float = Field(description="Fused reciprocal-rank score.")
    similarity: float = Field(description="Cosine similarity of question and chunk.")
    dense_rank: int | None = None
    lexical_rank: int | None = None
    lexical_score: float | None = None


class Retrieval(BaseModel):
    """The result of one search."""

    query: str
    hits: list[Hit]
    relevant: bool = Field(description="Whether the best hit clears the similarity floor.")
    best_similarity: float
    elapsed_ms: float = 0.0


class RetrievalOptions(BaseModel):
    """Tuning of hybrid retrieval (settings fill these in)."""

    candidates: int = Field(default=30, ge=1, description="Candidates from each retriever.")
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal rank fusion constant.")
    min_similarity: float = Field(default=0.35, description="Floor for 'relevant'.")
    mmr_lambda: float = Field(default=0.7, ge=0.0, le=1.0, description="1 = no diversity.")


class Retriever:
    """Search a `GuidelineIndex` with an embedder, by meaning and by words."""

    def __init__(
        self,
        index: GuidelineIndex,
        embedder: Embeddings,
        options: RetrievalOptions | None = None,
    ) -> None:
        self.index, self.embedder = index, embedder
        self.options = options or RetrievalOptions()

    def _fused(
        self, query: str, language: str | None, sources: list[str] | None, candidates: int
    ) -> tuple[list[Hit], npt.NDArray[np.float32]]:
        vector = np.asarray(self.embedder.embed_query(query), dtype=np.float32)
        dense = self.index.dense(vector.tolist(), candidates, language, sources)
        allowed = self.index.chunk_ids(language, sources)
        lexical = self.index.lexical().search(query, candidates, allowed)
        k = self.options.rrf_k
        hits: dict[str, Hit] = {}
        for rank, d in enumerate(dense, 1):
            hits[d.chunk.id] = Hit(
                chunk=d.chunk, score=1 / (k + rank), similarity=d.similarity, dense_rank=rank
            )
        missing = [cid for cid, _ in lexical if cid not in hits]
        vectors = self.index.embeddings(missing)
        for rank, (cid, score) in enumerate(lexical, 1):
            hit = hits.get(cid)
            if hit is None:
                similarity = float(np.dot(vector, np.asarray(vectors[cid], dtype=np.float32)))
                hit = hits[cid] = Hit(chunk=self.index.chunk(cid), score=0.0, similarity=similarity)
            hit.score += 1 / (k + rank)
            hit.lexical_rank, hit.lexical_score = rank, score
        ranked = sorted(hits.values(), key=lambda h: -h.score)
        return ranked, vector

    def search(
        self,
        query: str,
        k: int = 4,
        language: str | None = None,
        sources: list[str] | None = None,
        mmr: bool = False,
        floor: bool = True,
    ) -> Retrieval:
        """Return the best `k` chunks; with `floor`, only those above the similarity floor."""
        started = time.perf_counter()
        if _LETTER.search(query) is None:
            # No word at all ("🙂🙂", "???"): nothing to look up. Its embedding sits near the
            # floor, where a CPU's float arithmetic would decide the answer.
            return Retrieval(
                query=query,
                hits=[],
                relevant=False,
                best_similarity=0.0,
                elapsed_ms=(time.perf_counter() - started) * 1000,
            )
        ranked, _ = self._fused(query, language, sources, self.options.candidates)
        best = max((h.similarity for h in ranked), default=0.0)
        if floor:
            ranked = [h for h in ranked if h.similarity >= self.options.min_similarity]
        hits = self.diversify(ranked, k) if mmr else ranked[:k]
        return Retrieval(
            query=query,
            hits=hits,
            relevant=best >= self.options.min_similarity,
            best_similarity=best,
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )

    def search_documents(self, query: str, k: int = 10) -> list[str]:
        """Return the keys of the `k` best documents, each ranked by its best chunk."""
        ranked, _ = self._fused(query, None, None, max(self.options.candidates, 5 * k))
        keys: list[str] = []
        for hit in ranked:
            if hit.chunk.doc_key not in keys:
                keys.append(hit.chunk.doc_key)
        return keys[:k]

    def diversify(self, ranked: list[Hit], k: int) -> list[Hit]:
        """Maximal marginal relevance: trade a little relevance for passages that differ."""
        if len(ranked) <= 1:
            return ranked[:k]
        vectors = self.index.embeddings([h.chunk.id for h in ranked])
        matrix = np.asarray([vectors[h.chunk.id] for h in ranked], dtype=np.float32)
        top = ranked[0].score
        relevance = np.asarray([h.score / top for h in ranked], dtype=np.float32)
        chosen = [0]
        lam = self.options.mmr_lambda
        while len(chosen) < min(k, len(ranked)):
            redundancy = (matrix @ matrix[chosen].T).max(axis=1)
            value = lam * relevance - (1 - lam) * redundancy
            value[chosen] = -np.inf
            chosen.append(int(value.argmax()))
        return [ranked[i] for i in chosen]
