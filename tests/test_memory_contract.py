"""One contract for session memory (a cache of recent turns), run against the embedded store
and a real redis-server."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.errors import MemoryUnavailable
from bot.memory.base import SessionStore, Turn
from bot.memory.inmemory import InMemorySessionStore
from bot.memory.redis_store import RedisSessionStore
from tests.servers import RedisServer, free_port


@pytest.fixture(params=["inmemory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    if request.param == "inmemory":
        yield InMemorySessionStore(ttl_s=2, max_turns=5)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    redis_store = RedisSessionStore.from_url(server.url, ttl_s=2, max_turns=5)
    yield redis_store
    await redis_store.aclose()


def key() -> str:
    return f"test:{uuid.uuid4().hex}"


class TestSessionStoreContract:
    async def test_unknown_chat_has_no_history(self, store: SessionStore) -> None:
        assert await store.history(key()) == []

    async def test_turns_round_trip_with_their_ids_and_questions(self, store: SessionStore) -> None:
        k = key()
        turns = (
            Turn(role="patient", text="chest hurts", message_id=7),
            Turn(role="bot", text="Since when?", asked=["onset"], message_id=8),
            Turn(role="doctor", text="I am here", message_id=None),
        )
        await store.append(k, *turns)
        assert await store.history(k) == list(turns)

    async def test_history_keeps_order_and_trims_to_max_turns(self, store: SessionStore) -> None:
        k = key()
        for i in range(4):
            await store.append(
                k, Turn(role="patient", text=f"q{i}"), Turn(role="bot", text=f"a{i}")
            )
        texts = [t.text for t in await store.history(k)]
        assert texts == ["a1", "q2", "a2", "q3", "a3"]
        assert [t.text for t in await store.history(k, limit=2)] == ["q3", "a3"]

    async def test_unicode_and_large_text_survive(self, store: SessionStore) -> None:
        k = key()
        text = "胸口痛 🤒 مرحبا " + "x" * 100_000
        await store.append(k, Turn(role="patient", text=text))
        assert (await store.history(k))[0].text == text

    async def test_chats_are_isolated(self, store: SessionStore) -> None:
        a, b = key(), key()
        await store.append(a, Turn(role="patient", text="only a"))
        assert await store.history(b) == []

    async def test_forget_deletes_everything(self, store: SessionStore) -> None:
        k = key()
        await store.append(k, Turn(role="patient", text="hi"))
        await store.forget(k)
        assert await store.history(k) == []

    async def test_sessions_expire_after_ttl(self, store: SessionStore) -> None:
        k = key()
        await store.append(k, Turn(role="patient", text="hi"))
        await asyncio.sleep(2.3)
        assert await store.history(k) == []

    async def test_ping_succeeds(self, store: SessionStore) -> None:
        await store.ping()


async def test_redis_down_raises_memory_unavailable(tmp_path: Path) -> None:
    dead = RedisSessionStore.from_url(f"redis://127.0.0.1:{free_port()}/0", 60, 5, timeout_s=0.5)
    with pytest.raises(MemoryUnavailable):
        await dead.ping()
    with pytest.raises(MemoryUnavailable):
        await dead.history("x")
    with pytest.raises(MemoryUnavailable):
        await dead.append("x", Turn(role="patient", text="hi"))
    await dead.aclose()


async def test_redis_keys_are_namespaced(redis_server: RedisServer) -> None:
    store = RedisSessionStore.from_url(redis_server.url, 60, 5)
    await store.append("telegram:42", Turn(role="patient", text="hi"))
    client = Redis.from_url(redis_server.url, decode_responses=True)
    keys = await client.keys("carebot:session:telegram:42:*")
    assert keys == ["carebot:session:telegram:42:history"]
    assert 0 < await client.ttl(keys[0]) <= 60
    await client.aclose()
    await store.aclose()


async def test_a_hung_redis_costs_one_short_wait_then_none_until_it_answers(
    tmp_path: Path,
) -> None:
    # Stopped (SIGSTOP): connections open, nothing answers -- worse than a dead server.
    server = RedisServer(tmp_path)
    store = RedisSessionStore.from_url(server.url, ttl_s=60, max_turns=10)
    store.cooldown_s = 1.0
    try:
        await store.append("test:hung", Turn(role="patient", text="before"))
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            waits = []
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(MemoryUnavailable):
                    await store.history("test:hung")
                waits.append(time.monotonic() - started)
            assert waits[0] < 1.0 and max(waits[1:]) < 0.05, waits
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        await asyncio.sleep(1.1)  # the rest is over: Redis is asked again, and answers
        assert [t.text for t in await store.history("test:hung")] == ["before"]
    finally:
        await store.aclose()
        server.stop()
