"""A per-chat sliding-window limit: how many messages a chat may send in a time window;
counted in this process, or shared by every worker through Redis (`RateLimits`)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.redis_clients import fail_fast_redis

logger = logging.getLogger(__name__)

# Chats (or addresses) seen once would otherwise stay in memory for good.
PRUNE_EVERY = 1024


class ChatRateLimit:
    """Count each chat's recent messages; say when one is over the limit, and whether the
    chat has already been told in this window (so the notice is sent once, not per message).
    """

    def __init__(
        self, messages: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.messages, self.window_s, self.clock = messages, window_s, clock
        self._seen: dict[str, deque[float]] = {}
        self._told: dict[str, float] = {}
        self._checks = 0

    def check(self, chat: str) -> str:
        """Record a message; return "ok", "notify" (first over the limit) or "quiet"."""
        self._checks += 1
        if self._checks % PRUNE_EVERY == 0:
            self.prune()
        now = self.clock()
        seen = self._seen.setdefault(chat, deque())
        while seen and now - seen[0] > self.window_s:
            seen.popleft()
        seen.append(now)
        if len(seen) <= self.messages:
            return "ok"
        if now - self._told.get(chat, -1e18) > self.window_s:
            self._told[chat] = now
            return "notify"
        return "quiet"

    def _recent(self, chat: str) -> deque[float]:
        now = self.clock()
        seen = self._seen.get(chat, deque())
        while seen and now - seen[0] > self.window_s:
            seen.popleft()
        return seen

    def over(self, chat: str) -> bool:
        """True when `chat` has used up its window (nothing is recorded)."""
        return len(self._recent(chat)) > self.messages

    def wait_s(self, chat: str) -> float:
        """Seconds until `chat` is back within its limit (0 when it is)."""
        seen = self._recent(chat)
        if len(seen) <= self.messages:
            return 0.0
        return max(0.0, seen[len(seen) - self.messages - 1] + self.window_s - self.clock())

    def forget(self, chat: str) -> None:
        """Start `chat`'s count again."""
        self._seen.pop(chat, None)
        self._told.pop(chat, None)

    def prune(self) -> None:
        """Forget chats quiet for a whole window (keeps memory flat over months)."""
        now = self.clock()
        for chat in [c for c, s in self._seen.items() if not s or now - s[-1] > self.window_s]:
            del self._seen[chat]
            self._told.pop(chat, None)


class RateWindow:
    """A ChatRateLimit's questions, asked asynchronously: counted in this process (here), or
    across every worker (RedisRateWindow)."""

    def __init__(self, limit: ChatRateLimit) -> None:
        self.local = limit

    async def check(self, key: str) -> str:
        """Record a message; return "ok", "notify" (first over the limit) or "quiet"."""
        return self.local.check(key)

    async def over(self, key: str) -> bool:
        """True when `key` has used up its window (nothing is recorded)."""
        return self.local.over(key)

    async def wait_s(self, key: str) -> float:
        """Seconds until `key` is back within its limit (0 when it is)."""
        return self.local.wait_s(key)

    async def forget(self, key: str) -> None:
        """Start `key`'s count again."""
        self.local.forget(key)


class RedisRateWindow(RateWindow):
    """The same window counted in Redis, so N workers allow what one would: a sorted set of
    attempt times per key (keys hashed: they are addresses and usernames), trimmed to the
    window on every call. Redis down or slow: counted in this process until it answers
    again (each worker its share, as before there was Redis), never an error or a wait.
    """

    def __init__(
        self, limits: RateLimits, name: str, local: ChatRateLimit, cooldown_s: float = 5.0
    ) -> None:
        super().__init__(local)
        self.limits, self.name, self.cooldown_s = limits, name, cooldown_s

    def _key(self, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return f"carebot:rate:{self.name}:{digest}"

    async def check(self, key: str) -> str:
        redis = self.limits.redis_now()
        if redis is None:
            return self.local.check(key)
        k, now, window = self._key(key), time.time(), self.local.window_s
        try:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(k, "-inf", now - window)
                pipe.zadd(k, {f"{now:.6f}:{uuid.uuid4().hex[:8]}": now})
                pipe.zcard(k)
                pipe.pexpire(k, math.ceil(window * 1000) + 1000)
                _, _, count, _ = await pipe.execute()
            if int(count) <= self.local.messages:
                return "ok"
            told = await redis.set(f"{k}:told", "1", nx=True, px=math.ceil(window * 1000))
            return "notify" if told else "quiet"
        except (RedisError, OSError) as exc:
            self.limits.failed(exc)
            return self.local.check(key)

    async def _times(self, key: str) -> list[float] | None:
        redis = self.limits.redis_now()
        if redis is None:
            return None
        k, now = self._key(key), time.time()
        try:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(k, "-inf", now - self.local.window_s)
                pipe.zrange(k, 0, -1, withscores=True)
                _, rows = await pipe.execute()
        except (RedisError, OSError) as exc:
            self.limits.failed(exc)
            return None
        return sorted(float(score) for _, score in rows)

    async def over(self, key: str) -> bool:
        times = await self._times(key)
        if times is None:
            return self.local.over(key)
        return len(times) > self.local.messages

    async def wait_s(self, key: str) -> float:
        times = await self._times(key)
        if times is None:
            return self.local.wait_s(key)
        if len(times) <= self.local.messages:
            return 0.0
        oldest = times[len(times) - self.local.messages - 1]
        return max(0.0, oldest + self.local.window_s - time.time())

    async def forget(self, key: str) -> None:
        self.local.forget(key)
        redis = self.limits.redis_now()
        if redis is None:
            return
        k = self._key(key)
        try:
            await redis.delete(k, f"{k}:told")
        except (RedisError, OSError) as exc:
            self.limits.failed(exc)


class RateLimits:
    """Makes a process's rate windows: shared in Redis when `redis_url` is set (several
    workers), else counted here. One Redis client for all of them; after a failure Redis is
    left alone for `cooldown_s`, so a hung Redis costs one request a moment, not every one."""

    def __init__(
        self,
        redis_url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = 0.3,
        cooldown_s: float = 5.0,
    ) -> None:
        self.clock, self.cooldown_s = clock, cooldown_s
        self._redis: Redis | None = None
        if redis_url:
            self._redis = fail_fast_redis(redis_url, timeout_s)
        self._resting_until = 0.0

    def window(self, name: str, messages: int, window_s: float) -> RateWindow:
        """A window of `messages` per `window_s`, named for its Redis keys."""
        local = ChatRateLimit(messages, window_s, self.clock)
        return RedisRateWindow(self, name, local) if self._redis else RateWindow(local)

    def redis_now(self) -> Redis | None:
        """The client, unless Redis failed moments ago."""
        return None if time.monotonic() < self._resting_until else self._redis

    def failed(self, exc: BaseException) -> None:
        if time.monotonic() >= self._resting_until:
            logger.warning(
                "rate limits counted per worker for now: Redis failed (%s)", type(exc).__name__
            )
        self._resting_until = time.monotonic() + self.cooldown_s

    async def aclose(self) -> None:
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.aclose()
