"""Retrieval evaluation on MedQuAD: does each question retrieve its own source document?"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

from pydantic import BaseModel, Field

from rag.documents import LoadError
from rag.ingest import find_files
from rag.loaders import load_file
from rag.retrieval import Retriever


class QuestionResult(BaseModel):
    """One question and where its own document ranked (None: not in the top 10)."""

    question: str
    document: str
    rank: int | None
    ms: float


class RetrievalReport(BaseModel):
    """Recall@1/5/10, MRR@10 and latency over a sample of questions."""

    questions: int
    recall_at_1: float
    recall_at_5: float
    recall_at_10: float
    mrr: float
    latency_p50_ms: float
    latency_p95_ms: float
    results: list[QuestionResult] = Field(default_factory=list)


def medquad_questions(folder: Path) -> list[tuple[str, str]]:
    """Return (question, document key) for every answered question in a MedQuAD folder."""
    files, _, _, _ = find_files([folder])
    pairs: list[tuple[str, str]] = []
    for path in files:
        try:
            doc = load_file(path)
        except LoadError:
            continue
        pairs.extend((section.heading, doc.key) for section in doc.sections)
    return pairs


def evaluate_retrieval(
    retriever: Retriever, pairs: list[tuple[str, str]], sample: int | None, seed: int = 7
) -> RetrievalReport:
    """Search each sampled question and score the rank of its own document."""
    chosen = random.Random(seed).sample(pairs, sample) if sample and sample < len(pairs) else pairs
    results = []
    for question, key in chosen:
        started = time.perf_counter()
        keys = retriever.search_documents(question, k=10)
        ms = (time.perf_counter() - started) * 1000
        rank = keys.index(key) + 1 if key in keys else None
        results.append(QuestionResult(question=question, document=key, rank=rank, ms=ms))
    n = max(len(results), 1)
    latencies = sorted(r.ms for r in results) or [0.0]
    return RetrievalReport(
        questions=len(results),
        recall_at_1=sum(r.rank is not None and r.rank <= 1 for r in results) / n,
        recall_at_5=sum(r.rank is not None and r.rank <= 5 for r in results) / n,
        recall_at_10=sum(r.rank is not None for r in results) / n,
        mrr=sum(1 / r.rank for r in results if r.rank) / n,
        latency_p50_ms=statistics.median(latencies),
        latency_p95_ms=latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        results=results,
    )


def format_retrieval(report: RetrievalReport) -> str:
    """Return the report as a small table."""
    rows = [
        ("questions", f"{report.questions}"),
        ("recall@1", f"{report.recall_at_1:.3f}"),
        ("recall@5", f"{report.recall_at_5:.3f}"),
        ("recall@10", f"{report.recall_at_10:.3f}"),
        ("MRR@10", f"{report.mrr:.3f}"),
        ("latency p50", f"{report.latency_p50_ms:.1f} ms"),
        ("latency p95", f"{report.latency_p95_ms:.1f} ms"),
    ]
    return "\n".join(f"{name:<12} {value:>10}" for name, value in rows)
