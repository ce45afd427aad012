"""Rate limits and sign-in throttles counted across workers in a real redis-server: N
workers allow what one would; Redis down, each worker counts its own share and nothing
fails or waits. The same contract holds for the in-process window.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.dashboard.login_throttle import LoginThrottle, ThrottlePolicy
from bot.rate_limit import RateLimits, RateWindow
from tests.servers import RedisServer

Windows = Callable[[int, float], list[RateWindow]]


@pytest.fixture(params=["in-process", "redis"])
async def windows(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[Windows]:
    """Windows as two workers see them: one shared count (Redis), or this process's."""
    made: list[RateLimits] = []

    def make(messages: int, window_s: float) -> list[RateWindow]:
        name = f"test-{time.monotonic_ns()}"
        if request.param == "in-process":
            limits = RateLimits()
            made.append(limits)
            window = limits.window(name, messages, window_s)
            return [window, window]
        pair = [RateLimits(redis_server.url), RateLimits(redis_server.url)]
        made.extend(pair)
        return [limits.window(name, messages, window_s) for limits in pair]

    yield make
    for limits in made:
        await limits.aclose()


async def test_a_window_counts_notifies_once_then_stays_quiet(windows: Windows) -> None:
    a, b = windows(3, 60.0)
    assert [await a.check("chat"), await b.check("chat"), await a.check("chat")] == ["ok"] * 3
    assert await b.check("chat") == "notify"  # the fourth message, whichever worker sees it
    assert await a.check("chat") == "quiet"
    assert await b.over("chat") and 55 < await a.wait_s("chat") <= 60
    assert await a.check("other chat") == "ok"
    await b.forget("chat")
    assert not await a.over("chat") and await a.check("chat") == "ok"


async def test_a_window_lets_messages_through_again_once_it_has_passed(windows: Windows) -> None:
    a, b = windows(1, 0.5)
    assert await a.check("k") == "ok" and await b.check("k") == "notify"
    await asyncio.sleep(0.6)
    assert await b.check("k") == "ok"


async def test_two_workers_sign_in_throttle_counts_once(redis_server: RedisServer) -> None:
    policy = ThrottlePolicy(per_client=50, overall=100, window_s=600, per_name_failures=5)
    pair = [RateLimits(redis_server.url), RateLimits(redis_server.url)]
    workers = [LoginThrottle(policy, limits) for limits in pair]
    try:
        for attempt in range(5):  # a guesser's requests land on both workers in turn
            throttle = workers[attempt % 2]
            assert await throttle.admit("203.0.113.9", "ada") == 0
            await throttle.failed("203.0.113.9", "ada")
        # Five wrong passwords in all (a worker alone saw three): refused on either worker.
        assert await workers[0].admit("203.0.113.9", "ada") > 0
        assert await workers[1].admit("203.0.113.9", "ada") > 0
        assert await workers[1].admit("10.1.2.3", "ada") == 0  # Dr Ada elsewhere is not
        client = Redis.from_url(redis_server.url, decode_responses=True)
        keys = [k async for k in client.scan_iter("carebot:rate:*")]
        await client.aclose()
        assert keys and not any("203.0.113.9" in k or "ada" in k for k in keys)  # hashed
    finally:
        for limits in pair:
            await limits.aclose()


async def test_redis_down_counts_here_without_failing_or_waiting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis = RedisServer(tmp_path)
    limits = RateLimits(redis.url)
    window = limits.window("down", 2, 60.0)
    try:
        assert await window.check("chat") == "ok"
        redis.stop()
        started = time.perf_counter()
        results = [await window.check("chat") for _ in range(3)]
        assert time.perf_counter() - started < 1.0  # one short timeout, then no more tries
        # Counted in this process from the failure on: its share of the window.
        assert results == ["ok", "ok", "notify"]
        assert sum("rate limits counted per worker" in r.message for r in caplog.records) == 1
    finally:
        await limits.aclose()
        redis.stop()
