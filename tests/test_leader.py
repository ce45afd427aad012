"""One process of several leads the timers, on PostgreSQL (an advisory lock) and on SQLite
(a file lock in the data folder); when the leader dies or loses its database connection,
another takes over; a second poller of the same bot refuses to start."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.errors import ConfigError
from bot.leader import Leadership, lead
from bot.storage.migrate import upgrade
from bot.storage.repository import make_engine
from tests.bot_api import BotAPIServer
from tests.conftest import RuntimeFactory


def test_one_holder_at_a_time_and_the_next_takes_over(database_url: str, tmp_path: Path) -> None:
    first_engine, second_engine = make_engine(database_url), make_engine(database_url)
    upgrade(first_engine)
    first = Leadership("timers", first_engine, tmp_path)
    second = Leadership("timers", second_engine, tmp_path)
    other = Leadership("telegram-polling", second_engine, tmp_path)
    try:
        assert first.try_acquire() and first.still_held()
        assert not second.try_acquire()
        assert other.try_acquire()  # another name is another lock
        first.release()  # the leader stops (or dies: its connection or file closes)
        assert second.try_acquire() and second.still_held()
    finally:
        for one in (first, second, other):
            one.release()
        first_engine.dispose()
        second_engine.dispose()


def test_a_leader_whose_database_session_ends_knows_it(postgres_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = postgres_server.fresh_database()
    engine, admin = make_engine(url), make_engine(url)
    leader = Leadership("timers", engine, tmp_path)
    waiting = Leadership("timers", admin, tmp_path)
    try:
        assert leader.try_acquire()
        with admin.connect() as conn:  # the server ends the leader's session (a failover)
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND granted"
                )
            )
        assert not leader.still_held()
        assert waiting.try_acquire()
    finally:
        leader.release()
        waiting.release()
        engine.dispose()
        admin.dispose()


async def test_only_the_leader_runs_the_timers_until_it_stops(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    ran: list[str] = []

    def timers(name: str):  # type: ignore[no-untyped-def]
        async def tick() -> None:
            while True:
                ran.append(name)
                await asyncio.sleep(0.01)

        return lambda: [tick()]

    flags = {name: asyncio.Event() for name in "ab"}
    tasks = {
        name: asyncio.create_task(
            lead(
                Leadership("timers", make_engine(database_url), tmp_path),
                timers(name),
                0.05,
                flags[name],
            )
        )
        for name in "ab"
    }
    try:
        for _ in range(100):
            if ran:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        leader = ran[0]
        follower = "b" if leader == "a" else "a"
        assert set(ran) == {leader} and flags[leader].is_set() and not flags[follower].is_set()
        tasks[leader].cancel()  # the leader stops
        with pytest.raises(asyncio.CancelledError):
            await tasks[leader]
        for _ in range(100):
            if follower in ran:
                break
            await asyncio.sleep(0.02)
        assert follower in ran and flags[follower].is_set() and not flags[leader].is_set()
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        engine.dispose()


async def test_a_second_poller_of_the_same_bot_refuses_to_start(
    api: BotAPIServer, make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    from bot.channels.telegram import start_telegram

    shared = {
        "data_dir": tmp_path / "data",
        "telegram_bot_token": "123:TEST",
        "telegram_api_base_url": api.base_url,
    }
    first = await make_runtime(**shared)
    await start_telegram(first)
    second = await make_runtime(**shared)
    with pytest.raises(ConfigError, match="another CareBot process is polling"):
        await start_telegram(second)
    await first.aclose()
    await start_telegram(second)  # the first one stopped: the second may poll now


async def test_a_lock_that_cannot_be_taken_is_said_and_tried_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "not-a-folder"
    folder.write_text("a file where the data folder should be")
    engine = make_engine(f"sqlite:///{tmp_path / 'carebot.db'}")
    flag = asyncio.Event()
    task = asyncio.create_task(lead(Leadership("timers", engine, folder), lambda: [], 0.02, flag))
    await asyncio.sleep(0.2)
    assert not task.done() and not flag.is_set()  # still trying, not dead
    assert sum("leadership timers" in r.getMessage() for r in caplog.records) >= 2
    folder.unlink()  # the folder can be made now: it leads
    for _ in range(100):
        if flag.is_set():
            break
        await asyncio.sleep(0.02)
    assert flag.is_set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    engine.dispose()
