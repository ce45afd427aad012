"""Per-chat work queues: a chat's jobs run one at a time in arrival order, chats in parallel.

A channel receives updates in order and hands each to its chat's queue without waiting, so
a slow answer in one chat never holds up another, and one chat's messages never overtake
each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from bot import metrics

logger = logging.getLogger(__name__)
Job = Callable[[], Awaitable[None]]


class ChatQueues:
    """A FIFO of jobs per chat, each drained by its own task while it has work."""

    def __init__(
        self, max_active_chats: int = 256, max_per_chat: int = 100, name: str = "chats"
    ) -> None:
        self.max_per_chat = max_per_chat
        self._depth = metrics.QUEUE_DEPTH.labels(name)
        self._queues: dict[str, deque[Job]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Bounds memory and LLM load when thousands of chats write at once.
        self._active = asyncio.Semaphore(max_active_chats)

    def submit(self, chat: str, job: Job) -> bool:
        """Queue a job behind the chat's earlier jobs (returns at once).

        False when the chat already has `max_per_chat` jobs waiting: one flooding chat cannot
        grow memory without bound (the caller keeps the work elsewhere, e.g. the inbox).
        """
        queue = self._queues.get(chat)
        if queue is not None and len(queue) >= self.max_per_chat:
            return False
        if queue is None:
            queue = self._queues[chat] = deque()
            task = asyncio.create_task(self._drain(chat, queue), name=f"chat-{chat}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        queue.append(job)
        self._depth.set(self.pending())
        return True

    async def _drain(self, chat: str, queue: deque[Job]) -> None:
        async with self._active:
            while queue:
                job = queue.popleft()
                try:
                    await job()
                except Exception as exc:  # one failed job must not stop the chat's queue
                    logger.error("chat job failed: %s", type(exc).__name__)
                self._depth.set(self.pending())
        del self._queues[chat]
        self._depth.set(self.pending() - 1)  # this chat's task ends here

    def pending(self) -> int:
        """Return the number of jobs waiting or running."""
        return sum(len(q) for q in self._queues.values()) + len(self._tasks)

    async def join(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued job has run; False when the timeout came first."""
        try:
            async with asyncio.timeout(timeout_s):
                while self._tasks:
                    await asyncio.gather(*list(self._tasks), return_exceptions=True)
        except TimeoutError:
            return False
        return True

    async def cancel(self) -> None:
        """Stop all work now (what was not done stays in the inbox for the next start)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._queues.clear()
