"""Erasing a patient's session memory for certain, even while the memory store is down.

`/forget` and the retention job delete the database rows at once; the copy of the recent
conversation in session memory (Redis) goes with them when Redis answers. When it does not,
the chat is recorded as pending in the database (the record, so a restart does not forget
it) and retried every RETRY_S until Redis confirms; the patient is told exactly that. The
engine never shows an erased conversation again meanwhile: it uses the cache only when it
ends at the database's own last message, and message ids are never reused.
"""

from __future__ import annotations

import asyncio
import logging

from sqlmodel import Session, col, delete, select

from bot.errors import MemoryUnavailable, StorageUnavailable
from bot.memory.base import SessionStore
from bot.storage.repository import Storage
from bot.storage.tables import PendingErasure

logger = logging.getLogger(__name__)
RETRY_S = 60.0


class MemoryErasure:
    """Forget chats in session memory now, or record them and keep trying."""

    def __init__(self, storage: Storage, sessions: SessionStore) -> None:
        self.storage, self.sessions = storage, sessions

    async def forget(self, chat_keys: list[str]) -> bool:
        """Erase the chats' session memory; False when some of it waits for a retry."""
        left = []
        for key in chat_keys:
            try:
                await self.sessions.forget(key)
            except MemoryUnavailable:
                left.append(key)
        if left:
            logger.warning("erasure: session memory unavailable; %d chat(s) pending", len(left))
            await self.storage.run(lambda s: _record(s, left))
        return not left

    async def pending(self) -> list[str]:
        """Chats whose session memory still waits to be erased."""
        rows = await self.storage.run(
            lambda s: s.exec(select(PendingErasure.chat_key).order_by(col(PendingErasure.id))).all()
        )
        return list(dict.fromkeys(rows))

    async def retry(self) -> int:
        """Try the pending chats again; return how many are still pending."""
        waiting = await self.pending()
        if not waiting:
            return 0
        try:
            await self.sessions.ping()  # asks the store itself, even while it rests
        except MemoryUnavailable:
            return len(waiting)
        done = []
        for key in waiting:
            try:
                await self.sessions.forget(key)
            except MemoryUnavailable:
                break  # still down: the rest waits for the next round
            done.append(key)
        if done:
            await self.storage.run(lambda s: _clear(s, done))
            logger.info("erasure: %d pending chat(s) erased from session memory", len(done))
        return len(waiting) - len(done)

    async def run(self, every_s: float = RETRY_S) -> None:
        """Retry pending erasures every `every_s`. Never raises."""
        while True:
            try:
                await self.retry()
            except StorageUnavailable:
                logger.warning("erasure: the database is unavailable; trying again later")
            await asyncio.sleep(every_s)


def _record(s: Session, keys: list[str]) -> None:
    for key in keys:
        s.add(PendingErasure(chat_key=key))
    s.commit()


def _clear(s: Session, keys: list[str]) -> None:
    s.execute(delete(PendingErasure).where(col(PendingErasure.chat_key).in_(keys)))
    s.commit()
