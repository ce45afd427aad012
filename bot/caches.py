"""In-memory caches that hold patients' words (sentence readings, spelling fixes, embeddings
of questions), registered so that erasing a patient empties them all.

A cache cannot tell whose words it holds (the same sentence may come from many patients), so
erasure clears every registered cache; they refill in a few messages. Each cache object
registers itself when it is made; the registry holds it weakly, so a discarded one goes.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Protocol

logger = logging.getLogger(__name__)


class PatientTextCache(Protocol):
    """Something that keeps patient text in memory and can drop it."""

    def clear_cache(self) -> None: ...


_caches: weakref.WeakSet[PatientTextCache] = weakref.WeakSet()
_lock = threading.Lock()


def register(cache: PatientTextCache) -> None:
    """Have `cache` emptied whenever a patient is erased."""
    with _lock:
        _caches.add(cache)


def clear_all() -> int:
    """Empty every registered cache; return how many there were."""
    with _lock:
        caches = list(_caches)
    for cache in caches:
        cache.clear_cache()
    logger.info("cleared %d in-memory caches of patient text", len(caches))
    return len(caches)
