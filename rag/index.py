"""The guideline index: chunks and their vectors in Chroma, with a BM25 index beside them.

Chroma is the store of record (embedded `PersistentClient` in the data folder, or a Chroma
server at `CHROMA_URL`); the lexical index is derived from it and rebuilt whenever the set of
chunks changes, so the two can never disagree for long.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlparse

from pydantic import BaseModel

from rag.chunking import Chunk
from rag.errors import IndexMismatch, IndexUnavailable
from rag.lexical import LexicalIndex

logger = logging.getLogger(__name__)
# How often a guideline index that could not be reached is tried again.
RETRY_S = 10.0
COLLECTION = "carebot-guidelines"
_PAGE = 2000  # rows per Chroma get, to bound memory on large collections


class DocumentEntry(BaseModel):
    """What the index knows of one ingested document."""

    key: str
    path: str
    doc_hash: str
    chunk_ids: list[str]


class IndexStats(BaseModel):
    """A summary for `carebot index stats`."""

    location: str
    embedding_model: str
    documents: int
    chunks: int
    languages: dict[str, int]
    sources: dict[str, int]


class DenseHit(BaseModel):
    """A chunk found by vector search, with its cosine similarity to the query."""

    chunk: Chunk
    similarity: float


_T = TypeVar("_T")
_P = ParamSpec("_P")


def _translated(method: Callable[_P, _T]) -> Callable[_P, _T]:
    """Turn any Chroma failure (a server gone, a corrupt file) into IndexUnavailable."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return method(*args, **kwargs)
        except IndexUnavailable:
            raise
        except Exception as exc:  # chromadb and httpx raise many types; all mean the same here
            raise IndexUnavailable(f"guideline index error: {exc}") from exc

    return wrapper


def _client(directory: Path, chroma_url: str | None) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    # Telemetry would try to reach the internet; CareBot runs air-gapped.
    settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    try:
        if chroma_url:
            url = urlparse(chroma_url)
            return chromadb.HttpClient(
                host=url.hostname or "localhost",
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=settings,
            )
        directory.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(directory / "chroma"), settings=settings)
    except Exception as exc:  # chromadb raises many types; all mean "cannot use the index"
        raise IndexUnavailable(f"cannot open the Chroma index: {exc}") from exc


class GuidelineIndex:
    """Store chunks with their embeddings; search them by vector and by BM25."""

    def __init__(
        self, directory: Path, embedding_model: str, chroma_url: str | None = None
    ) -> None:
        self.directory = directory
        self.embedding_model = embedding_model
        self.location = chroma_url or str(directory / "chroma")
        self._chroma_url = chroma_url
        self._client: Any = None
        self._collection_: Any = None
        self._retry_at = 0.0
        try:
            self._connect()
        except IndexMismatch:
            raise  # the wrong model: an operator must rebuild, waiting will not help
        except IndexUnavailable as exc:
            if not chroma_url:
                raise  # a local index that cannot be opened is a fault to fix, not to wait out
            # A Chroma server may come later: start without it (emergencies need no index;
            # answers say no guideline was found) and try again as the index is used.
            logger.error("guideline index unavailable at start (%s); will retry", exc)
        self._lexical: LexicalIndex | None = None
        self._chunks: dict[str, Chunk] = {}
        # Every patient answer filters by language: keep each filter's id set until a change.
        self._filtered: dict[tuple[str | None, tuple[str, ...]], frozenset[str]] = {}

    def _connect(self) -> None:
        self._client = _client(self.directory, self._chroma_url)
        self._collection_ = self._open()

    @property
    def _collection(self) -> Any:
        """The Chroma collection, connecting (at most every RETRY_S) when it is not yet open."""
        if self._collection_ is None:
            now = time.monotonic()
            if now < self._retry_at:
                raise IndexUnavailable("guideline index unavailable (Chroma); retrying")
            self._retry_at = now + RETRY_S
            self._connect()
        return self._collection_

    def _open(self) -> Any:
        try:
            collection = self._client.get_or_create_collection(
                COLLECTION,
                metadata={"hnsw:space": "cosine", "embedding_model": self.embedding_model},
                embedding_function=None,
            )
        except Exception as exc:
            raise IndexUnavailable(f"cannot open the Chroma collection: {exc}") from exc
        stored = (collection.metadata or {}).get("embedding_model")
        if stored and stored != self.embedding_model:
            raise IndexMismatch(
                f"the index was built with {stored}, not {self.embedding_model}; "
                "run `carebot index drop` and ingest again"
            )
        return collection

    # --- writing ---------------------------------------------------------------------------

    @_translated
    def add(self, chunks: list[Chunk], embeddings: list[list[float]]) -> None:
        """Store chunks with their vectors (existing ids are overwritten)."""
        step = 1000
        for start in range(0, len(chunks), step):
            part = chunks[start : start + step]
            self._collection.upsert(
                ids=[c.id for c in part],
                embeddings=embeddings[start : start + step],
                documents=[c.text for c in part],
                metadatas=[c.metadata() for c in part],
            )
        self._lexical = None

    @_translated
    def delete(self, chunk_ids: Iterable[str]) -> None:
        """Remove chunks by id."""
        ids = list(chunk_ids)
        for start in range(0, len(ids), 1000):
            self._collection.delete(ids=ids[start : start + 1000])
        self._lexical = None

    def drop(self) -> None:
        """Delete every chunk and the lexical index."""
        try:
            self._client.delete_collection(COLLECTION)
        except Exception as exc:  # a missing collection is already dropped
            logger.debug("drop: %s", exc)
        shutil.rmtree(self.directory / "lexical", ignore_errors=True)
        self._collection_ = self._open()
        self._lexical, self._chunks = None, {}

    # --- reading ---------------------------------------------------------------------------

    @_translated
    def count(self) -> int:
        """Return the number of chunks."""
        return int(self._collection.count())

    def _rows(self, include: list[str]) -> Iterable[tuple[str, str | None, dict[str, Any]]]:
        total = self.count()
        for offset in range(0, total, _PAGE):
            got = self._collection.get(include=include, limit=_PAGE, offset=offset)
            docs = got.get("documents") or [None] * len(got["ids"])
            yield from zip(got["ids"], docs, got["metadatas"], strict=True)

    @_translated
    def documents(self) -> dict[str, DocumentEntry]:
        """Return every ingested document by key (what incremental ingest compares against)."""
        entries: dict[str, DocumentEntry] = {}
        for chunk_id, _, meta in self._rows(["metadatas"]):
            key = str(meta["doc_key"])
            entry = entries.setdefault(
                key,
                DocumentEntry(
                    key=key, path=str(meta["path"]), doc_hash=str(meta["doc_hash"]), chunk_ids=[]
                ),
            )
            entry.chunk_ids.append(chunk_id)
        return entries

    @_translated
    def stats(self) -> IndexStats:
        """Count documents, chunks, languages and sources."""
        docs: dict[str, tuple[str, str]] = {}
        chunks = 0
        for _, _, meta in self._rows(["metadatas"]):
            chunks += 1
            docs[str(meta["doc_key"])] = (str(meta["language"]), str(meta["source"]))
        return IndexStats(
            location=self.location,
            embedding_model=self.embedding_model,
            documents=len(docs),
            chunks=chunks,
            languages=dict(Counter(lang for lang, _ in docs.values()).most_common()),
            sources=dict(Counter(src for _, src in docs.values()).most_common()),
        )

    @_translated
    def lexical(self) -> LexicalIndex:
        """Return the BM25 index, loading or rebuilding it when the chunks have changed."""
        if self._lexical is not None:
            return self._lexical
        chunks = {
            cid: Chunk.from_stored(cid, text or "", meta)
            for cid, text, meta in self._rows(["documents", "metadatas"])
        }
        ids = sorted(chunks)
        generation = hashlib.sha256("\n".join(ids).encode()).hexdigest()
        folder = self.directory / "lexical"
        lexical = LexicalIndex.load(folder, generation)
        if lexical is None:
            lexical = LexicalIndex(ids, [chunks[i].indexed_text() for i in ids])
            try:
                lexical.save(folder, generation)
            except OSError as exc:  # a read-only data folder still serves from memory
                logger.warning("cannot save the lexical index: %s", exc)
        self._lexical, self._chunks, self._filtered = lexical, chunks, {}
        return lexical

    def chunk(self, chunk_id: str) -> Chunk:
        """Return a chunk by id (after `lexical()` has loaded them)."""
        self.lexical()
        return self._chunks[chunk_id]

    def chunk_ids(self, language: str | None, sources: list[str] | None) -> frozenset[str] | None:
        """Return the ids passing the filters, or None when there is no filter."""
        if language is None and not sources:
            return None
        self.lexical()
        key = (language, tuple(sorted(sources or ())))
        if key not in self._filtered:
            self._filtered[key] = frozenset(
                cid
                for cid, c in self._chunks.items()
                if (language is None or c.language == language)
                and (not sources or c.source in sources)
            )
        return self._filtered[key]

    @_translated
    def dense(
        self,
        vector: list[float],
        k: int,
        language: str | None = None,
        sources: list[str] | None = None,
    ) -> list[DenseHit]:
        """Return the `k` nearest chunks to `vector`, passing the metadata filters."""
        clauses: list[dict[str, Any]] = []
        if language:
            clauses.append({"language": language})
        if sources:
            clauses.append({"source": {"$in": sources}})
        where = clauses[0] if len(clauses) == 1 else ({"$and": clauses} if clauses else None)
        n = min(k, self.count())
        if n == 0:
            return []
        got = self._collection.query(
            query_embeddings=[vector], n_results=n, where=where, include=["distances"]
        )
        # Chunk texts come from memory (loaded with the BM25 index): half the query time.
        self.lexical()
        return [
            DenseHit(chunk=self._chunks[cid], similarity=1.0 - float(dist))
            for cid, dist in zip(got["ids"][0], got["distances"][0], strict=True)
            if cid in self._chunks
        ]

    @_translated
    def embeddings(self, chunk_ids: list[str]) -> dict[str, list[float]]:
        """Return stored vectors by chunk id (for similarity of lexical-only hits and MMR)."""
        if not chunk_ids:
            return {}
        got = self._collection.get(ids=chunk_ids, include=["embeddings"])
        return {
            cid: [float(x) for x in vec]
            for cid, vec in zip(got["ids"], got["embeddings"], strict=True)
        }
