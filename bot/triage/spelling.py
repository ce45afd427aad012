"""Typo tolerance for rule matching: correct words one edit away from the rules' vocabulary.

A patient in distress types "chset pian" or "breathign". The rules' own words form the
vocabulary; a word of five or more letters that is not in it and is one deletion, insertion,
substitution or transposition away from exactly one vocabulary word is replaced by that word;
words over 30 letters are left alone, so the cost stays linear in the length of the text.
The corrected text is matched *in addition to* the original, so a correction can add a finding
but never hide one.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from bot import caches

_WORD = re.compile(r"[a-z]+")
_LITERAL = re.compile(r"[a-z]{4,}")
MIN_LENGTH = 5
# Longer "words" are not misspelt medical words (no rule word is this long) but pasted
# strings or keyboard mashing; correcting them would cost time growing with their length.
MAX_LENGTH = 30


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def vocabulary_from_patterns(patterns: Iterable[str]) -> set[str]:
    """Collect the plain words of five or more letters written in regular expressions."""
    words: set[str] = set()
    for pattern in patterns:
        # Drop escapes like \b and \w so "\bbreath" gives "breath", not "bbreath".
        cleaned = re.sub(r"\\[a-zA-Z]", " ", pattern.lower())
        words.update(_LITERAL.findall(cleaned))
    return words


class SpellingCorrector:
    """Map misspelt words to the single rule word they are one edit away from."""

    def __init__(self, vocabulary: Iterable[str], known: Iterable[str] = ()) -> None:
        self.vocabulary = {w for w in vocabulary if len(w) >= 4}
        # Ordinary words that are spelt right ("though" is not "through").
        self.known = frozenset(known)
        # Symmetric deletion index: two words are one edit apart iff they share a
        # deletion variant or one is a deletion of the other (transpositions included).
        self._cache: dict[str, str | None] = {}  # patients reuse words: remember verdicts
        caches.register(self)
        self._index: dict[str, set[str]] = defaultdict(set)
        for word in self.vocabulary:
            self._index[word].add(word)
            for variant in _deletions(word):
                self._index[variant].add(word)

    def _candidates(self, word: str) -> set[str]:
        found = set(self._index.get(word, ()))
        for variant in _deletions(word):
            found |= self._index.get(variant, set())
        return {c for c in found if c != word and _one_edit(word, c)}

    def _fix(self, word: str) -> str | None:
        # The rules hold stems ("sweat", "breath"): fix the longest prefix that is one edit
        # from exactly one stem and keep the ending ("swaeting" -> "sweating").
        for length in range(len(word), MIN_LENGTH - 1, -1):
            prefix = word[:length]
            candidates = self._candidates(prefix)
            if length < 6:
                # Short words are only corrected for swapped letters: "sweet" is not "sweat".
                candidates = {c for c in candidates if sorted(c) == sorted(prefix)}
            if len(candidates) == 1:
                return candidates.pop() + word[length:]
        return None

    def clear_cache(self) -> None:
        """Forget the verdicts on patients' words (a patient was erased)."""
        self._cache.clear()

    def correct(self, text: str) -> str | None:
        """Return the text with misspellings fixed, or None when nothing changed."""
        lowered = text.lower()
        # Each distinct word is judged once (in a long text most words repeat); the text is
        # only rewritten when a word needs fixing.
        fixes: dict[str, str] = {}
        for word in set(_WORD.findall(lowered)):
            if not MIN_LENGTH <= len(word) <= MAX_LENGTH:
                continue
            if word not in self._cache:
                if len(self._cache) > 20_000:
                    self._cache.clear()
                # A rule stem with an ending ("sweat" + "ing") is spelt right; a short stem at
                # the start of a long word ("anti" in "antiderpessants") proves nothing.
                shortest = max(4, len(word) - 5)
                known = word in self.known or any(
                    word[:n] in self.vocabulary for n in range(shortest, len(word) + 1)
                )
                self._cache[word] = None if known else self._fix(word)
            fixed = self._cache[word]
            if fixed is not None:
                fixes[word] = fixed
        if not fixes:
            return None
        return _WORD.sub(lambda m: fixes.get(m.group(0), m.group(0)), lowered)


def _one_edit(a: str, b: str) -> bool:
    """Return whether a and b differ by one insertion, deletion, substitution or swap."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))
