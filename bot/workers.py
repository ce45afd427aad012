"""Bounded thread pools, one per kind of blocking work, so no kind can starve another.

asyncio's default executor is shared by everything that calls `asyncio.to_thread`: when the
embedded model, database calls and retrieval all wait on it, one slow kind holds every thread
and an emergency's database write queues behind guideline answers. Each kind of work here has
its own few threads, named for it (they show in a thread dump), and nothing CPU-heavy runs on
the event loop: triage, database calls, retrieval (embeddings and the index) each go through
their pool. The embedded model has its own single thread (`bot.llm.embedded`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class WorkerPool:
    """A named pool of threads for one kind of blocking work."""

    def __init__(self, name: str, threads: int) -> None:
        self.name, self.threads = name, threads
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` on one of the pool's threads (with the caller's context variables)."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        call = functools.partial(context.run, fn, *args, **kwargs)
        return await loop.run_in_executor(self._executor, call)

    def shutdown(self) -> None:
        """Stop taking work (threads finish what they hold)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


# Sizes: a server database (PostgreSQL) takes several writers at once. SQLite takes one writer
# at a time, and a second thread waiting for its lock sleeps in SQLite's busy handler (up to
# tens of ms a try): four threads moved 8.3 Telegram messages a second, one thread 15.4. So
# SQLite gets one thread, in the order calls were made, and nothing slow may run inside a
# storage call (password hashing has its own pool). Triage is a few ms of pure Python on
# caches that are not thread-safe: one thread (the longest decision, 200,000 characters of
# dense medical prose, is ~0.5 s). Retrieval embeds a query and searches the index. Argon2
# takes ~50 ms and 64 MiB a check: two at a time.
STORAGE = WorkerPool("carebot-storage", 4)
SQLITE = WorkerPool("carebot-sqlite", 1)
TRIAGE = WorkerPool("carebot-triage", 1)
RETRIEVAL = WorkerPool("carebot-retrieval", 2)
PASSWORDS = WorkerPool("carebot-passwords", 2)
