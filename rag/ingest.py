"""Incremental ingestion: files -> documents -> chunks -> embeddings -> index.

A document's identity is its resolved path and its version is a hash of its bytes, so a
re-run skips unchanged files without parsing them, replaces changed ones, and removes files
that disappeared from an ingested folder. A file that cannot be loaded is reported with its
reason and never stops the run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from rag.chunking import Chunk, chunk_document
from rag.documents import LoadError
from rag.embeddings import MiniLMEmbeddings
from rag.index import DocumentEntry, GuidelineIndex
from rag.loaders import SUPPORTED_SUFFIXES, display_path, parse, read_file

logger = logging.getLogger(__name__)
# Bump when loaders or chunking change what a file turns into: every document is re-ingested.
PIPELINE_VERSION = "1"
Status = Literal["added", "updated", "unchanged", "removed", "duplicate", "failed", "unapproved"]
# Whether a file may enter the index, given its path and bytes (four eyes on guideline pages:
# bot/guideline_approvals.py). A file refused is reported "unapproved" and, when it was in
# the index before, taken out of it.
Admit = Callable[[Path, bytes], bool]


class FileOutcome(BaseModel):
    """What happened to one file."""

    path: str
    status: Status
    chunks: int = 0
    reason: str | None = None
    warnings: list[str] = Field(default_factory=list)


class Progress(Protocol):
    """Receives progress of a run (the CLI draws a bar with it)."""

    def start(self, total: int) -> None:
        """Announce how many files will be looked at."""

    def advance(self, outcome: FileOutcome) -> None:
        """Report one file decided."""


class IngestReport(BaseModel):
    """The summary `carebot ingest` prints."""

    files: list[FileOutcome] = Field(default_factory=list)
    ignored: int = Field(default=0, description="Files in folders with unsupported suffixes.")
    chunks_added: int = 0
    chunks_removed: int = 0
    documents_in_index: int = 0
    chunks_in_index: int = 0
    seconds: float = 0.0
    peak_memory_mb: float = 0.0

    def count(self, status: Status) -> int:
        """Return how many files ended with `status`."""
        return sum(1 for f in self.files if f.status == status)

    @property
    def changed(self) -> bool:
        """Whether the index changed."""
        return bool(self.chunks_added or self.chunks_removed)


@dataclass
class IngestOptions:
    """Limits and chunking parameters of a run."""

    max_bytes: int = 200 * 1024 * 1024
    max_chars: int = 1200
    overlap: int = 200
    flush_chunks: int = 512  # chunks embedded together; bounds memory on huge runs


@dataclass
class _Pending:
    outcomes: list[FileOutcome] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)


def find_files(paths: Sequence[Path]) -> tuple[list[Path], list[Path], int, list[FileOutcome]]:
    """Expand paths into (files, folders, ignored count, failures for missing paths)."""
    files: list[Path] = []
    folders: list[Path] = []
    missing: list[FileOutcome] = []
    ignored = 0
    for path in paths:
        if path.is_dir():
            folders.append(path.resolve())
            for found in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in found.relative_to(path).parts)
                if hidden or not found.is_file():
                    continue
                if found.suffix.lower() in SUPPORTED_SUFFIXES:
                    files.append(found)
                else:
                    ignored += 1
        elif path.is_file():
            files.append(path)
        else:
            missing.append(FileOutcome(path=str(path), status="failed", reason="no such file"))
    return files, folders, ignored, missing


def _hash(data: bytes, options: IngestOptions) -> str:
    params = f"{PIPELINE_VERSION}:{options.max_chars}:{options.overlap}:".encode()
    return hashlib.sha256(params + data).hexdigest()


def _inside(key: str, folders: list[Path]) -> bool:
    return any(key.startswith(str(folder) + os.sep) for folder in folders)


def ingest(
    paths: Sequence[Path],
    index: GuidelineIndex,
    embedder: MiniLMEmbeddings,
    options: IngestOptions | None = None,
    progress: Progress | None = None,
    admit: Admit | None = None,
) -> IngestReport:
    """Bring the index in line with `paths`, reporting each file to `progress`; with `admit`,
    only the files it admits."""
    options = options or IngestOptions()
    started = time.perf_counter()
    files, folders, ignored, missing = find_files(paths)
    report = IngestReport(ignored=ignored, files=list(missing))
    if progress is not None:
        progress.start(len(files))
    known = index.documents()
    by_hash = {entry.doc_hash: entry.key for entry in known.values()}
    seen: set[str] = set()
    pending = _Pending()

    def decided(outcome: FileOutcome) -> None:
        report.files.append(outcome)
        if progress is not None and outcome.status != "removed":
            progress.advance(outcome)

    def flush() -> None:
        if not pending.chunks and not pending.stale:
            return
        vectors = embedder.embed_documents([c.indexed_text() for c in pending.chunks])
        index.add(pending.chunks, vectors)
        new_ids = {c.id for c in pending.chunks}
        stale = [cid for cid in pending.stale if cid not in new_ids]
        index.delete(stale)
        report.chunks_added += len(pending.chunks)
        report.chunks_removed += len(stale)
        for outcome in pending.outcomes:
            decided(outcome)
        pending.outcomes, pending.chunks, pending.stale = [], [], []

    for path in files:
        key = str(path.resolve())
        if key in seen:
            continue
        seen.add(key)
        shown = display_path(path)
        try:
            data = read_file(path, options.max_bytes)
        except LoadError as exc:
            decided(FileOutcome(path=shown, status="failed", reason=exc.reason))
            continue
        if admit is not None and not admit(path, data):
            seen.discard(key)  # as if absent: an earlier copy leaves the index below
            decided(FileOutcome(path=shown, status="unapproved", reason="awaiting approval"))
            continue
        doc_hash = _hash(data, options)
        entry: DocumentEntry | None = known.get(key)
        if entry is not None and entry.doc_hash == doc_hash:
            decided(FileOutcome(path=shown, status="unchanged", chunks=len(entry.chunk_ids)))
            continue
        twin = by_hash.get(doc_hash)
        if twin is not None and twin != key and (twin in seen or Path(twin).exists()):
            reason = f"same content as {known[twin].path if twin in known else twin}"
            if entry is not None:  # it used to differ; drop its old chunks
                pending.stale.extend(entry.chunk_ids)
            pending.outcomes.append(FileOutcome(path=shown, status="duplicate", reason=reason))
            continue
        try:
            doc = parse(path, data)
        except LoadError as exc:
            decided(FileOutcome(path=shown, status="failed", reason=exc.reason))
            continue
        chunks, dropped = chunk_document(doc, doc_hash, options.max_chars, options.overlap)
        warnings = list(doc.warnings)
        if dropped:
            warnings.append(f"removed {dropped} instruction-like sentence(s)")
        if not chunks:
            decided(FileOutcome(path=shown, status="failed", reason="no text to index"))
            continue
        by_hash[doc_hash] = key
        if entry is not None:
            pending.stale.extend(entry.chunk_ids)
        pending.chunks.extend(chunks)
        status: Status = "updated" if entry is not None else "added"
        pending.outcomes.append(
            FileOutcome(path=shown, status=status, chunks=len(chunks), warnings=warnings)
        )
        if len(pending.chunks) >= options.flush_chunks:
            flush()

    for key, entry in known.items():
        explicitly_named = any(str(p.resolve()) == key for p in paths)
        if key not in seen and (_inside(key, folders) or explicitly_named):
            pending.stale.extend(entry.chunk_ids)
            pending.outcomes.append(
                FileOutcome(path=entry.path, status="removed", chunks=len(entry.chunk_ids))
            )
    flush()
    stats = index.stats() if report.changed else None
    report.documents_in_index = stats.documents if stats else len(known)
    report.chunks_in_index = (
        stats.chunks if stats else sum(len(e.chunk_ids) for e in known.values())
    )
    if report.changed:
        index.lexical()  # rebuild now, not on the first patient's question
    report.seconds = time.perf_counter() - started
    report.peak_memory_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    logger.info(
        "ingest: %d added, %d updated, %d unchanged, %d removed, %d failed in %.1f s",
        report.count("added"),
        report.count("updated"),
        report.count("unchanged"),
        report.count("removed"),
        report.count("failed"),
        report.seconds,
    )
    return report
