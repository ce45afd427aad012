"""Staff passwords: argon2id hashes, a minimum length, no guessable ones, and checks that take
the same time.

"Guessable" is zxcvbn's judgement (Dropbox's estimator, maintained as zxcvbn-python): it
knows the passwords of public breach corpora, common words and names, keyboard patterns,
dates and l33t substitutions, offline, and scores how many guesses a password would take.
Below MIN_SCORE (about 10^8 guesses: an online attacker's reach once throttling is
bypassed) a password is refused with zxcvbn's own advice.
"""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bot.dashboard.errors import InvalidAccount

MIN_LENGTH = 10
MIN_SCORE = 3  # zxcvbn's 0-4: 3 is "safely unguessable", about 10^8 guesses
MAX_LENGTH = 1024  # argon2 takes any length; a bound keeps a huge form field cheap


@functools.cache
def _decoy(time_cost: int, memory_cost: int, parallelism: int) -> str:
    hasher = PasswordHasher(time_cost, memory_cost=memory_cost, parallelism=parallelism)
    return hasher.hash("not anyone's password")


class Passwords:
    """Hash and check passwords; nothing here ever logs or returns a password."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()

    def hash(self, password: str, known: tuple[str, ...] = ()) -> str:
        """Return the argon2id hash of an acceptable password; refuse short and guessable
        ones (`known`: the username and name, which a guesser tries first)."""
        if len(password) < MIN_LENGTH:
            raise InvalidAccount(f"a password needs at least {MIN_LENGTH} characters")
        if len(password) > MAX_LENGTH:
            raise InvalidAccount(f"a password may have at most {MAX_LENGTH} characters")
        problem = guessable(password, known)
        if problem:
            raise InvalidAccount(problem)
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


def guessable(password: str, known: tuple[str, ...] = ()) -> str | None:
    """Why `password` is too easy to guess (breached, common, a pattern, the user's own
    name), or None. zxcvbn looks at the first 100 characters only (it is slow on more)."""
    from zxcvbn import zxcvbn  # type: ignore[import-untyped]  # no stubs published

    verdict = zxcvbn(password[:100], user_inputs=[k for k in known if k])
    if verdict["score"] >= MIN_SCORE:
        return None
    feedback = verdict.get("feedback") or {}
    hint = feedback.get("warning") or "it is too easy to guess"
    advice = " ".join(feedback.get("suggestions") or []) or "Use a few uncommon words."
    return f"this password is too easy to guess ({hint.rstrip('.').lower()}). {advice}"
