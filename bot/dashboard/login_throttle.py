"""Sign-in attempts counted before any password is checked.

Argon2 costs about 0.1 s of a core per guess, and the accounts' own lockout let anyone lock
every doctor out with a handful of requests each. So, in front of both: a limit per client
address, a limit for all addresses together (a distributed guesser, or a flood meant to keep
the password pool busy), and a lock per address and username (a typo-prone doctor locks only
themselves out, on their own device; an attacker elsewhere cannot lock them out). The
account-wide lock (StaffAccounts) stays as the backstop against guessing from many
addresses, with a higher threshold. A browser the account signed in from before (a known
device, bot/dashboard/known_devices.py) is counted on its own instead: strangers filling the
address or overall limits, or locking the account, do not lock its owner out of it.

Counts are shared by every worker through Redis when it is set (bot/rate_limit.py), so N
workers allow what one would; without Redis they live in this process's memory (a restart
forgets them; the account-wide lock, in the database, does not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bot.rate_limit import RateLimits


@dataclass(frozen=True)
class ThrottlePolicy:
    """How many sign-in attempts are allowed, and in what windows."""

    per_client: int = 10  # attempts per address per window
    overall: int = 60  # attempts from all addresses per window
    window_s: float = 600.0
    per_name_failures: int = 5  # wrong passwords for one username from one address


class LoginThrottle:
    """Say whether a sign-in attempt may go on to the password check."""

    def __init__(
        self, policy: ThrottlePolicy | None = None, limits: RateLimits | None = None
    ) -> None:
        self.policy = policy or ThrottlePolicy()
        p, limits = self.policy, limits or RateLimits()
        self._clients = limits.window("login-client", p.per_client, p.window_s)
        self._overall = limits.window("login-overall", p.overall, p.window_s)
        self._failures = limits.window("login-failures", p.per_name_failures - 1, p.window_s)

    async def admit(self, client: str, username: str, device: str | None = None) -> int:
        """Record an attempt; 0 when it may proceed, else the seconds to wait. `device` is
        the key of a known device of that account: only its own failures count then."""
        name_key = self._key(client, username, device)
        if await self._failures.over(name_key):
            return self._wait(await self._failures.wait_s(name_key))
        if device is not None:
            return 0
        if await self._clients.check(client) != "ok":
            return self._wait(await self._clients.wait_s(client))
        if await self._overall.check("*") != "ok":
            return self._wait(await self._overall.wait_s("*"))
        return 0

    async def failed(self, client: str, username: str, device: str | None = None) -> None:
        """A wrong password for `username` from `client` (or from a known device)."""
        await self._failures.check(self._key(client, username, device))

    async def succeeded(self, client: str, username: str, device: str | None = None) -> None:
        """A right password: that address's (or device's) failures for that name are
        forgotten."""
        await self._failures.forget(self._key(client, username, device))

    @staticmethod
    def _key(client: str, username: str, device: str | None) -> str:
        if device is not None:
            return f"device\n{device}"
        return f"{client}\n{username.strip().lower()}"

    @staticmethod
    def _wait(seconds: float) -> int:
        return max(1, math.ceil(seconds))
