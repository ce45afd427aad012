"""One worker at a time per chat: the chat lease in the inbox, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.models import utcnow
from bot.storage.inbox import UpdateInbox
from bot.storage.repository import Storage


async def test_a_chat_is_held_by_one_worker_until_it_lets_go_or_stops_renewing(
    storage: Storage,
) -> None:
    inbox = UpdateInbox(storage, "telegram")
    assert await inbox.take_chat("7", "worker-a", 30)
    assert not await inbox.take_chat("7", "worker-b", 30)  # held
    assert await inbox.take_chat("8", "worker-b", 30)  # another chat is free
    assert await inbox.take_chat("7", "worker-a", 30)  # the holder renews
    await inbox.free_chat("7", "worker-b")  # not b's to free
    assert not await inbox.take_chat("7", "worker-b", 30)
    await inbox.free_chat("7", "worker-a")
    assert await inbox.take_chat("7", "worker-b", 0.2)
    await asyncio.sleep(0.3)  # b died: its lease ran out without renewal
    assert await inbox.take_chat("7", "worker-a", 30)


async def test_many_workers_asking_at_once_get_one_holder(storage: Storage) -> None:
    inbox = UpdateInbox(storage, "telegram")
    taken = await asyncio.gather(*(inbox.take_chat("9", f"w{i}", 30) for i in range(12)))
    assert sum(taken) == 1


async def test_a_chats_kept_updates_come_oldest_first_and_only_when_due(storage: Storage) -> None:
    inbox = UpdateInbox(storage, "telegram")
    for update_id in (12, 10, 11):
        assert await inbox.add(update_id, "5", {"update_id": update_id})
    await inbox.add(13, "6", {"update_id": 13})
    assert (await inbox.next_of_chat("5"))[0] == 10  # type: ignore[index]
    await inbox.finish(10)
    assert await inbox.failed(11)  # to be retried later, not now
    assert (await inbox.next_of_chat("5"))[0] == 12  # type: ignore[index]
    assert (await inbox.next_of_chat("5", utcnow() + timedelta(hours=1)))[0] == 11  # type: ignore[index]
    assert await inbox.due_chats(utcnow() + timedelta(hours=1)) == ["5", "6"]
    assert await inbox.due_chats(quiet_s=3600) == []  # all just received: still under way
