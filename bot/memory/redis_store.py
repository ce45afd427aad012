"""Session memory in Redis (redis-py asyncio), for production and several workers."""

from __future__ import annotations

import logging

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.errors import MemoryUnavailable
from bot.memory.base import SessionState, SessionStore, Turn

logger = logging.getLogger(__name__)


class RedisSessionStore(SessionStore):
    """Keep each chat's state (a JSON string) and history (a list) under namespaced keys."""

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

    async def get_state(self, chat_key: str) -> SessionState | None:
        try:
            raw = await self._redis.get(self._key(chat_key, "state"))
        except (RedisError, OSError) as exc:
            raise MemoryUnavailable(type(exc).__name__) from exc
        if raw is None:
            return None
        try:
            return SessionState.model_validate_json(raw)
        except ValidationError:
            # A state written by an incompatible version is dropped, not fatal.
            logger.warning("discarding unreadable session state")
            return None

    async def set_state(self, chat_key: str, state: SessionState) -> None:
        try:
            await self._redis.set(
                self._key(chat_key, "state"), state.model_dump_json(), ex=self.ttl_s
            )
        except (RedisError, OSError) as exc:
            raise MemoryUnavailable(type(exc).__name__) from exc

    async def append(self, chat_key: str, *turns: Turn) -> None:
        if not turns:
            return
        key = self._key(chat_key, "history")
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, *(t.model_dump_json() for t in turns))
                pipe.ltrim(key, -self.max_turns, -1)
                pipe.expire(key, self.ttl_s)
                pipe.expire(self._key(chat_key, "state"), self.ttl_s)
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
