"""Live events between workers over a real redis-server: what one worker does reaches the
dashboards and web chats whose streams another worker holds; nothing is lost for good when
Redis is down (the database is the record), and no patient text crosses Redis in the clear.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.cases.events import CaseEvent
from bot.cases.models import Actor
from bot.cluster_events import CHANNEL, RedisClusterEvents
from bot.storage import encryption
from tests.dashboard.live import PageEvents, serving
from tests.fakes import scripted
from tests.servers import RedisServer

DOCTOR = Actor(name="Dr Ada", staff_id=1)
SIGNING_KEY = "a-signing-key-both-workers-share-0123456789"  # pragma: allowlist secret


@pytest.fixture(autouse=True)
def no_keys_after() -> Iterator[None]:
    yield
    encryption.configure(None)


async def _wait_for(predicate: Any, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_a_worker_hears_the_others_events_not_its_own_and_no_text_in_the_clear(
    redis_server: RedisServer,
) -> None:
    encryption.configure(SecretStr(Fernet.generate_key().decode()))
    a, b = RedisClusterEvents(redis_server.url), RedisClusterEvents(redis_server.url)
    heard_a: list[dict[str, Any]] = []
    heard_b: list[dict[str, Any]] = []

    async def hear_a(data: dict[str, Any]) -> None:
        heard_a.append(data)

    async def hear_b(data: dict[str, Any]) -> None:
        heard_b.append(data)

    a.on("web", hear_a)
    b.on("web", hear_b)
    spy = Redis.from_url(redis_server.url, decode_responses=True).pubsub()
    await spy.subscribe(CHANNEL)
    tasks = [asyncio.create_task(x.run()) for x in (a, b)]
    try:
        await asyncio.sleep(0.3)  # both subscribed
        await a.publish("web", {"chat": "w1", "text": "my chest hurts, Zebedee"})
        assert await _wait_for(lambda: heard_b)
        assert heard_b == [{"chat": "w1", "text": "my chest hurts, Zebedee"}]
        await asyncio.sleep(0.2)
        assert heard_a == []  # its own event is not delivered back
        raw = [m async for m in _drain(spy)]
        assert raw and not any("Zebedee" in m for m in raw)  # sealed with the message keys
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await spy.aclose()
        await a.aclose()
        await b.aclose()


async def _drain(spy: Any) -> Any:
    while (message := await spy.get_message(timeout=0.2)) is not None:
        if message["type"] == "message":
            yield str(message["data"])


async def test_redis_down_costs_live_updates_only_and_they_resume(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    a, b = RedisClusterEvents(redis.url), RedisClusterEvents(redis.url)
    heard: list[dict[str, Any]] = []

    async def hear(data: dict[str, Any]) -> None:
        heard.append(data)

    b.on("web", hear)
    task = asyncio.create_task(b.run())
    try:
        await asyncio.sleep(0.3)
        redis.stop()
        started = time.perf_counter()
        await a.publish("web", {"chat": "w1", "text": "lost while down"})  # neither raises
        assert time.perf_counter() - started < 2.0  # nor holds the patient's turn
        redis = RedisServer(tmp_path, port=redis.port)
        await asyncio.sleep(0.2)
        for _ in range(100):  # the listener reconnects on its own
            await a.publish("web", {"chat": "w1", "text": "after"})
            if await _wait_for(lambda: heard, 0.2):
                break
        assert heard and heard[-1]["text"] == "after"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await a.aclose()
        await b.aclose()
        redis.stop()


def test_two_workers_share_dashboard_events_and_web_patients_streams(
    tmp_path: Path,
    guideline_index_dir: Path,
    database_url: str,
    redis_server: RedisServer,
) -> None:
    shared: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_server.url,
        "signing_key": SIGNING_KEY,
    }
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    llm = scripted("Keep the rash clean and dry [1].")
    with (
        serving(tmp_path / "a", guideline_index_dir, llm, **shared) as a,
        serving(tmp_path / "b", guideline_index_dir, llm, **shared) as b,
    ):
        # A dashboard stream held by worker A.
        seen_on_a: list[CaseEvent] = []

        async def watch(rt: Any) -> None:
            async with rt.cases.events.stream() as queue:
                while True:
                    seen_on_a.append(await queue.get())

        watching = asyncio.run_coroutine_threadsafe(watch(a.runtime), a.loop)
        # A web patient on worker B asks for a doctor: a case opens there.
        web = httpx.Client(base_url=b.url, timeout=60)
        say(web, "I have had a rash for a week", consent=True)
        assert web.post("/api/doctor").json()["kind"] == "notice"
        deadline = time.monotonic() + 10
        while not any(e.kind == "opened" for e in seen_on_a) and time.monotonic() < deadline:
            time.sleep(0.05)
        opened = [e for e in seen_on_a if e.kind == "opened"]
        assert opened, [e.kind for e in seen_on_a]
        case_id = opened[0].case_id

        # The patient's page streams from worker B; the doctor answers through worker A.
        page = PageEvents(web)
        a.call(lambda rt: rt.cases.claim(case_id, DOCTOR))
        a.call(lambda rt: rt.cases.reply(case_id, DOCTOR, "Please send me a photo."))
        page.wait_for(2)
        time.sleep(1.0)  # room for a copy too many to arrive
        pushed = page.pushed
        watching.cancel()
        assert any("Dr Ada" in t and "joined" in t for t in pushed), pushed
        assert "Dr Ada (doctor): Please send me a photo." in pushed, pushed
        assert sum("Please send me a photo." in t for t in pushed) == 1  # once, not per worker


def say(web: httpx.Client, text: str, **extra: Any) -> dict[str, Any]:
    body = {"message_id": uuid.uuid4().hex, "text": text, **extra}
    with web.stream("POST", "/api/messages", json=body) as res:
        assert res.status_code == 200, res.read()
        events = [json.loads(line) for line in res.iter_lines() if line]
    return dict(events[-1])
