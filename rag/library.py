"""Open the guideline library (embedder, index, retriever) from settings, once at start-up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.config import Settings
from rag.embeddings import MiniLMEmbeddings
from rag.index import GuidelineIndex
from rag.ingest import Admit, IngestOptions, IngestReport, Progress, ingest
from rag.retrieval import RetrievalOptions, Retriever

BUNDLED = Path(__file__).with_name("guidelines")


@dataclass
class GuidelineLibrary:
    """The parts every user of the guidelines needs: the CLI, the engine, the evaluations."""

    settings: Settings
    embedder: MiniLMEmbeddings
    index: GuidelineIndex
    retriever: Retriever

    @classmethod
    def open(cls, settings: Settings, index_dir: Path | None = None) -> GuidelineLibrary:
        """Open (or create) the index named by settings; raise IndexUnavailable."""
        embedder = MiniLMEmbeddings(
            settings.embedding_model_path,
            batch_size=settings.embedding_batch_size,
            precision=settings.embedding_precision,
        )
        index = GuidelineIndex(
            index_dir or settings.guideline_index_dir,
            embedder.name,
            None if index_dir else settings.chroma_url,
        )
        options = RetrievalOptions(
            candidates=settings.retrieval_candidates,
            min_similarity=settings.retrieval_min_similarity,
        )
        return cls(settings, embedder, index, Retriever(index, embedder, options))

    def ingest(
        self,
        paths: Sequence[Path],
        progress: Progress | None = None,
        admit: Admit | None = None,
    ) -> IngestReport:
        """Ingest files and folders incrementally with the configured limits (only what
        `admit` admits, when given)."""
        options = IngestOptions(
            max_bytes=self.settings.ingest_max_file_mb * 1024 * 1024,
            max_chars=self.settings.chunk_max_chars,
            overlap=self.settings.chunk_overlap,
        )
        return ingest(paths, self.index, self.embedder, options, progress, admit)

    def start_up_paths(self) -> list[Path]:
        """Return what is ingested at start: the bundled pack and the configured paths."""
        return [BUNDLED, *self.settings.guideline_paths]
