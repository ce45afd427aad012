"""Per-chat locks: FIFO within a chat, and nothing left behind once a chat goes quiet."""

from __future__ import annotations

import asyncio

from bot.locks import ChatLocks


async def test_one_chat_runs_in_arrival_order_and_locks_are_released() -> None:
    locks, order = ChatLocks(), []

    async def work(chat: str, n: int) -> None:
        async with locks.hold(chat):
            await asyncio.sleep(0.01)
            order.append((chat, n))

    await asyncio.gather(*(work("a", n) for n in range(5)), *(work("b", n) for n in range(5)))
    assert [n for chat, n in order if chat == "a"] == list(range(5))
    assert len(locks) == 0  # no lock kept per chat forever


async def test_a_failing_holder_releases_the_lock() -> None:
    locks = ChatLocks()
    try:
        async with locks.hold("a"):
            raise ValueError("boom")
    except ValueError:
        pass
    async with asyncio.timeout(1), locks.hold("a"):
        pass
    assert len(locks) == 0
