"""Session memory in Redis (redis-py asyncio), for production and several workers."""

from __future__ import annotations

import logging

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.errors import MemoryUnavailable
from bot.memory.base import SessionStore, Turn

logger = logging.getLogger(__name__)


class RedisSessionStore(SessionStore):
    """Keep each chat's recent turns (a list of JSON strings) under a namespaced key."""

    def __init__(
        self, client: Redis, ttl_s: int, max_turns: int, namespace: str = "carebot"
    ) -> None:
        super().__init__(ttl_s, max_turns)
        self._redis = client
        self._ns = namespace

    @classmethod
    def from_url(
        cls, url: str, ttl_s: int, max_turns: int, timeout_s: float = 2.0
    ) -> RedisSessionStore:
        """Connect lazily to `url` with short timeouts, so a dead Redis fails fast."""
        client = Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True
        )
        return cls(client, ttl_s, max_turns)

    def _key(self, chat_key: str, part: str) -> str:
        return f"{self._ns}:session:{chat_key}:{part}"

    async def append(self, chat_key: str, *turns: Turn) -> None:
        if not turns:
            return
        key = self._key(chat_key, "history")
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, *(t.model_dump_json() for t in turns))
                pipe.ltrim(key, -self.max_turns, -1)
                pipe.expire(key, self.ttl_s)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise MemoryUnavailable(type(exc).__name__) from exc

    async def history(self, chat_key: str, limit: int | None = None) -> list[Turn]:
        start = -limit if limit else 0
        try:
            raw = await self._redis.lrange(self._key(chat_key, "history"), start, -1)
        except (RedisError, OSError) as exc:
            raise MemoryUnavailable(type(exc).__name__) from exc
        turns = []
        for item in raw:
            try:
                turns.append(Turn.model_validate_json(item))
            except ValidationError:
                logger.warning("skipping unreadable history entry")
        return turns

    async def forget(self, chat_key: str) -> None:
        try:
            # "state" was written by versions before the database kept it: erase it too.
            await self._redis.delete(self._key(chat_key, "state"), self._key(chat_key, "history"))
        except (RedisError, OSError) as exc:
            raise MemoryUnavailable(type(exc).__name__) from exc

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise MemoryUnavailable(type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self._redis.aclose()
