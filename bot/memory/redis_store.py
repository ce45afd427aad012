"""Session memory in Redis (redis-py asyncio), for production and several workers."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot import metrics
from bot.errors import MemoryUnavailable
from bot.memory.base import SessionStore, Turn
from bot.redis_clients import fail_fast_redis
from bot.storage.encryption import UndecryptableText, open_if_sealed, seal_if_keyed

logger = logging.getLogger(__name__)
T = TypeVar("T")


class RedisSessionStore(SessionStore):
    """Keep each chat's recent turns (a list of JSON strings) under a namespaced key.

    Only a cache (the database is the record), so it may fail but never be slow: each call
    waits at most `timeout_s` (a Redis on the same network answers in a millisecond), and
    after a failure the store is left alone for `cooldown_s`, so a hung Redis (stopped,
    swapping, a dead network path) costs one turn half a second, not every turn.
    """

    def __init__(
        self,
        client: Redis,
        ttl_s: int,
        max_turns: int,
        namespace: str = "carebot",
        cooldown_s: float = 5.0,
    ) -> None:
        super().__init__(ttl_s, max_turns)
        self._redis = client
        self._ns = namespace
        self.cooldown_s = cooldown_s
        self._resting_until = 0.0

    @classmethod
    def from_url(
        cls, url: str, ttl_s: int, max_turns: int, timeout_s: float = 0.5
    ) -> RedisSessionStore:
        """Connect lazily to `url` with short timeouts, so a dead Redis fails fast."""
        return cls(fail_fast_redis(url, timeout_s), ttl_s, max_turns)

    async def _call(self, op: Callable[[], Awaitable[T]], probe: bool = False) -> T:
        if not probe and time.monotonic() < self._resting_until:
            raise MemoryUnavailable("failed moments ago; resting")
        try:
            result = await op()
        except (RedisError, OSError) as exc:
            self._resting_until = time.monotonic() + self.cooldown_s
            metrics.DEPENDENCY_ERRORS.labels("redis").inc()
            raise MemoryUnavailable(type(exc).__name__) from exc
        if probe:
            self._resting_until = 0.0
        return result

    def _key(self, chat_key: str, part: str) -> str:
        return f"{self._ns}:session:{chat_key}:{part}"

    async def append(self, chat_key: str, *turns: Turn) -> None:
        if not turns:
            return
        key = self._key(chat_key, "history")

        async def write() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, *(seal_if_keyed(t.model_dump_json()) for t in turns))
                pipe.ltrim(key, -self.max_turns, -1)
                pipe.expire(key, self.ttl_s)
                await pipe.execute()

        await self._call(write)

    async def history(self, chat_key: str, limit: int | None = None) -> list[Turn]:
        start = -limit if limit else 0
        key = self._key(chat_key, "history")
        raw = await self._call(lambda: self._redis.lrange(key, start, -1))
        turns = []
        for item in raw:
            try:
                text = item.decode() if isinstance(item, bytes) else item
                turns.append(Turn.model_validate_json(open_if_sealed(text)))
            except (ValidationError, UndecryptableText):
                # Sealed with a key no longer configured, or damaged: a cache miss, and the
                # engine rebuilds the history from the database.
                logger.warning("session memory entry unreadable; rebuilding from the database")
                return []
        return turns

    async def forget(self, chat_key: str) -> None:
        # "state" was written by versions before the database kept it: erase it too.
        keys = (self._key(chat_key, "state"), self._key(chat_key, "history"))
        await self._call(lambda: self._redis.delete(*keys))

    async def clear_all(self) -> int:
        """Drop every chat's session memory (after a key rotation: entries sealed with an
        old key, or stored in clear, must not outlive it). It is a cache; the database keeps
        the record. Returns how many keys went."""

        async def drop() -> int:
            gone = 0
            async for key in self._redis.scan_iter(match=f"{self._ns}:session:*", count=500):
                gone += int(await self._redis.delete(key))
            return gone

        return await self._call(drop, probe=True)

    async def ping(self) -> None:
        # Health checks ask Redis itself, resting or not (and end a rest when it answers).
        await self._call(self._redis.ping, probe=True)

    async def aclose(self) -> None:
        await self._redis.aclose()
