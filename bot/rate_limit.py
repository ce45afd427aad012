"""A per-chat sliding-window limit: how many messages a chat may send in a time window."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

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
