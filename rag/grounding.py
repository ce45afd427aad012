"""Is a generated answer supported by its passages? A lexical check that errs on the safe side.

Every sentence of the answer must draw at least `min_support` of its content words from the
passages, and every number in it (doses, days, temperatures) must appear in them. A 135M model
that wanders, invents a dose or answers another question fails the check, and the engine then
quotes the passages themselves.
"""

from __future__ import annotations

import re

from rag.lexical import tokenize

_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+|\n+")
_MARKER = re.compile(r"\[\d+\]")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def unsupported_sentences(answer: str, passages: list[str], min_support: float = 0.7) -> list[str]:
    """Return the answer's sentences that the passages do not support."""
    vocabulary = {t for p in passages for t in tokenize(p)}
    numbers = {n for p in passages for n in _NUMBER.findall(p)}
    bad = []
    for sentence in _SENTENCE.split(answer):
        plain = _MARKER.sub("", sentence).strip()
        terms = tokenize(plain)
        invented_number = any(n not in numbers for n in _NUMBER.findall(plain))
        weak = len(terms) >= 3 and sum(t in vocabulary for t in terms) / len(terms) < min_support
        if invented_number or weak:
            bad.append(plain)
    return bad


def is_grounded(answer: str, passages: list[str], min_support: float = 0.7) -> bool:
    """Return True when the answer says something and every sentence is supported."""
    body = _MARKER.sub("", answer).strip()
    if len(tokenize(body)) < 3:
        return False
    return not unsupported_sentences(answer, passages, min_support)
