"""Staff passwords: argon2id hashes, a minimum length, and checks that take the same time."""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bot.dashboard.errors import InvalidAccount

MIN_LENGTH = 10
MAX_LENGTH = 1024  # argon2 takes any length; a bound keeps a huge form field cheap


@functools.cache
def _decoy(time_cost: int, memory_cost: int, parallelism: int) -> str:
    hasher = PasswordHasher(time_cost, memory_cost=memory_cost, parallelism=parallelism)
    return hasher.hash("not anyone's password")


class Passwords:
    """Hash and check passwords; nothing here ever logs or returns a password."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()

    def hash(self, password: str) -> str:
        """Return the argon2id hash of an acceptable password; refuse short ones."""
        if len(password) < MIN_LENGTH:
            raise InvalidAccount(f"a password needs at least {MIN_LENGTH} characters")
        if len(password) > MAX_LENGTH:
            raise InvalidAccount(f"a password may have at most {MAX_LENGTH} characters")
        return self.hasher.hash(password)

    def verify(self, hashed: str, password: str) -> bool:
        """Return True when `password` matches `hashed`."""
        if len(password) > MAX_LENGTH:
            return False
        try:
            return self.hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, hashed: str) -> bool:
        """Return True when the hash was made with weaker parameters than today's."""
        return self.hasher.check_needs_rehash(hashed)

    def decoy(self, password: str) -> None:
        """Spend the time of a real check, so a refusal does not tell which usernames exist."""
        h = self.hasher
        self.verify(_decoy(h.time_cost, h.memory_cost, h.parallelism), password)
