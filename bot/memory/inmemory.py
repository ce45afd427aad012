"""Embedded session memory: a per-process store that needs no server (the `make run` default)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.memory.base import SessionStore, Turn

# Chats that never write again would stay forever if expiry were checked only on access.
SWEEP_EVERY = 1024


@dataclass
class _Entry:
    turns: deque[Turn] = field(default_factory=deque)
    expires_at: float = 0.0


class InMemorySessionStore(SessionStore):
    """Keep sessions in a dict with Redis-like TTL semantics; lost on restart by design."""

    def __init__(
        self, ttl_s: int, max_turns: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(ttl_s, max_turns)
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._writes = 0

    def _live(self, chat_key: str) -> _Entry | None:
        entry = self._entries.get(chat_key)
        if entry is not None and entry.expires_at <= self._clock():
            del self._entries[chat_key]
            return None
        return entry

    def _touch(self, chat_key: str) -> _Entry:
        self._writes += 1
        if self._writes % SWEEP_EVERY == 0:
            self.sweep()
        entry = self._live(chat_key) or self._entries.setdefault(chat_key, _Entry())
        entry.expires_at = self._clock() + self.ttl_s
        return entry

    async def append(self, chat_key: str, *turns: Turn) -> None:
        entry = self._touch(chat_key)
        entry.turns.extend(turns)
        while len(entry.turns) > self.max_turns:
            entry.turns.popleft()

    async def history(self, chat_key: str, limit: int | None = None) -> list[Turn]:
        entry = self._live(chat_key)
        if entry is None:
            return []
        turns = list(entry.turns)
        return turns[-limit:] if limit else turns

    async def forget(self, chat_key: str) -> None:
        self._entries.pop(chat_key, None)

    async def ping(self) -> None:
        return None

    def sweep(self) -> int:
        """Drop every expired chat (not only those read again); return how many."""
        now = self._clock()
        gone = [key for key, entry in self._entries.items() if entry.expires_at <= now]
        for key in gone:
            del self._entries[key]
        return len(gone)

    def __len__(self) -> int:
        return len(self._entries)
