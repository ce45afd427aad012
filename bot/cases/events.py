"""Case events, published to whoever listens (doctors' group, dashboard streams); the streams
of other workers hear them through bot/cluster_events.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from pydantic import BaseModel, Field

from bot.cluster_events import ClusterEvents
from bot.models import utcnow

logger = logging.getLogger(__name__)


class CaseEvent(BaseModel):
    """Something happened to a case. `text` carries a relayed message, nothing else does."""

    # opened | summarized | claimed | resolved | expired | realerted | patient | doctor |
    # forgotten (the patient was erased) | erase_messages
    kind: str
    case_id: int
    level: str
    status: str
    actor: str | None = None
    text: str | None = None
    red_flags: list[str] = Field(default_factory=list)
    # "erase_messages": the bot's (chat, message) pairs in doctors' chats to blank.
    messages: list[tuple[int, int]] = Field(default_factory=list)
    at: str = Field(default_factory=lambda: utcnow().isoformat())


Listener = Callable[[CaseEvent], Awaitable[None]]


class CaseEvents:
    """Publish case events to listeners (awaited in turn) and to streams (queued)."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._streams: set[asyncio.Queue[CaseEvent]] = set()
        self._cluster: ClusterEvents = ClusterEvents()
        self._sharing: set[asyncio.Task[None]] = set()

    def share(self, cluster: ClusterEvents) -> None:
        """Show this worker's events on every worker's streams (dashboards), and theirs here.

        Listeners (the doctors' Telegram desk) hear only this worker's events: the worker
        where a case moved has already acted on it.
        """
        self._cluster = cluster

        async def remote(data: dict[str, Any]) -> None:
            self._to_streams(CaseEvent.model_validate(data))

        cluster.on("case", remote)

    def listen(self, listener: Listener) -> None:
        """Call `listener` for every event (a failing listener is logged, others still run)."""
        self._listeners.append(listener)

    async def publish(self, event: CaseEvent) -> None:
        """Deliver an event to every listener and stream (of every worker)."""
        self._to_streams(event)
        for listener in list(self._listeners):
            try:
                await listener(event)
            except Exception as exc:
                logger.error("case listener failed on %s: %s", event.kind, type(exc).__name__)
        # Not awaited: a slow Redis must not hold the turn that moved the case (an
        # emergency reply to a patient with a doctor waits for this publish).
        task = asyncio.create_task(self._cluster.publish("case", event.model_dump()))
        self._sharing.add(task)
        task.add_done_callback(self._sharing.discard)

    def _to_streams(self, event: CaseEvent) -> None:
        for queue in list(self._streams):
            if queue.qsize() < 1000:  # a stalled browser tab must not grow memory forever
                queue.put_nowait(event)

    @asynccontextmanager
    async def stream(self) -> AsyncIterator[asyncio.Queue[CaseEvent]]:
        """A queue of events for as long as the block runs (a dashboard's live updates)."""
        queue: asyncio.Queue[CaseEvent] = asyncio.Queue()
        self._streams.add(queue)
        try:
            yield queue
        finally:
            self._streams.discard(queue)
