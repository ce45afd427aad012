"""Errors of the guideline index, translated to patient or operator text at the edges."""

from __future__ import annotations

from bot.errors import CareBotError


class IndexUnavailable(CareBotError):
    """The guideline index or its embedding model cannot be used."""


class IndexMismatch(IndexUnavailable):
    """The index was built with another embedding model: an operator must rebuild it."""
