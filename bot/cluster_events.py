"""Live events between the workers of one CareBot (Redis pub/sub).

A doctor's dashboard page and a patient's web chat hold a stream to one worker; what happens
in another worker (a case opened by its patient, a doctor's message to a web patient, a
patient erased whose words sit in every worker's caches) reaches them through here.

Only live views and caches travel: the database is the record, so an event missed here
(Redis down, a worker restarting) is on the page at its next load, and a remote event never
makes a worker *act* (the worker where it happened has already told Telegram). Payloads are
sealed with the message keys when encryption is on: a relayed message is patient text.

Chosen over PostgreSQL LISTEN/NOTIFY: Redis is already the session memory that several
workers share, pub/sub needs no connection held out of the database pool, and a deployment
on SQLite (one host) can still run several workers with a Redis beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from bot import caches
from bot.redis_clients import fail_fast_redis
from bot.storage.encryption import UndecryptableText, open_if_sealed, seal_if_keyed

logger = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any]], Awaitable[None]]
ChatSend = Callable[[str, str], Awaitable[None]]
CHANNEL = "carebot:live"


class ClusterEvents:
    """One process: nothing to share. The interface the Redis version fills in."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {"caches": self._clear_here}

    async def clear_caches(self) -> None:
        """Empty every worker's in-memory caches of patient text (a patient was erased)."""
        caches.clear_all()
        await self.publish("caches", {})

    async def _clear_here(self, data: dict[str, Any]) -> None:
        del data
        caches.clear_all()

    def on(self, topic: str, handler: Handler) -> None:
        """Call `handler` with the data of every `topic` event from another worker."""
        self._handlers[topic] = handler

    async def publish(self, topic: str, data: dict[str, Any]) -> None:
        """Tell the other workers (here: there are none)."""

    def shared(self, topic: str, local: ChatSend) -> ChatSend:
        """`local` (deliver to this worker's open streams of a chat) made to reach the
        streams of every worker: the returned function delivers here and tells the rest."""

        async def remote(data: dict[str, Any]) -> None:
            await local(str(data["chat"]), str(data["text"]))

        self.on(topic, remote)

        async def send(chat: str, text: str) -> None:
            await local(chat, text)
            await self.publish(topic, {"chat": chat, "text": text})

        return send

    async def run(self) -> None:
        """Receive other workers' events until cancelled (here: nothing to receive)."""

    async def _deliver(self, topic: str, data: dict[str, Any]) -> None:
        handler = self._handlers.get(topic)
        if handler is None:
            return
        try:
            await handler(data)
        except Exception as exc:  # one bad event must not end the listener
            logger.error("live event %s from another worker failed: %s", topic, type(exc).__name__)

    async def aclose(self) -> None:
        """Close connections."""


class RedisClusterEvents(ClusterEvents):
    """Events published on one Redis channel; each worker ignores its own."""

    def __init__(self, url: str, timeout_s: float = 0.5) -> None:
        super().__init__()
        self.origin = uuid.uuid4().hex
        self._url = url
        # Publishing must never hold a patient's turn: short timeouts, no retries, and after
        # a failure Redis is left alone for `cooldown_s` (events meanwhile are not shared).
        self._publisher = fail_fast_redis(url, timeout_s)
        self.cooldown_s = 5.0
        self._resting_until = 0.0

    async def publish(self, topic: str, data: dict[str, Any]) -> None:
        if time.monotonic() < self._resting_until:
            return
        payload = seal_if_keyed(json.dumps({"origin": self.origin, "topic": topic, "data": data}))
        try:
            await self._publisher.publish(CHANNEL, payload)
        except (RedisError, OSError) as exc:
            if self._resting_until == 0.0:  # once per outage, not once per event
                logger.warning(
                    "live events not shared with other workers (%s); pages catch up on reload",
                    type(exc).__name__,
                )
            self._resting_until = time.monotonic() + self.cooldown_s
            return
        self._resting_until = 0.0

    async def run(self) -> None:
        pause = 0.5
        while True:
            listener = fail_fast_redis(self._url, None)
            try:
                async with listener.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    pause = 0.5
                    # Erasures published while this worker was not listening were missed:
                    # its caches may hold an erased patient's words, so they go now.
                    caches.clear_all()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self._received(str(message["data"]))
            except (RedisError, OSError) as exc:
                logger.warning("live events from other workers paused: %s", type(exc).__name__)
            except Exception as exc:  # never end silently: a bug here stops live pages
                logger.error("live events listener failed: %s", type(exc).__name__)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await listener.aclose()
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)

    async def _received(self, payload: str) -> None:
        try:
            event = json.loads(open_if_sealed(payload))
        except (UndecryptableText, ValueError):
            logger.warning("a live event from another worker could not be read; skipped")
            return
        if not isinstance(event, dict) or event.get("origin") == self.origin:
            return
        data = event.get("data")
        if isinstance(data, dict):
            await self._deliver(str(event.get("topic")), data)

    async def aclose(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._publisher.aclose()


def build_cluster_events(redis_url: str | None) -> ClusterEvents:
    """Redis pub/sub when Redis is configured, else the single-process no-op."""
    return RedisClusterEvents(redis_url) if redis_url else ClusterEvents()
