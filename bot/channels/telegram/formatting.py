"""Reply text to Telegram messages: split under Telegram's limit, sent as escaped HTML.

Telegram counts a message's length in UTF-16 code units of the text *after* its HTML is
parsed, so splitting works on the plain text and escaping comes afterwards.
"""

from __future__ import annotations

import html
import re

LIMIT = 4096
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


def utf16_len(text: str) -> int:
    """Return the length Telegram sees (characters outside the BMP count twice)."""
    return len(text.encode("utf-16-le")) // 2


def to_html(text: str) -> str:
    """Escape a plain reply for parse_mode=HTML; `**bold**` and warning lines become bold."""
    lines = []
    for line in html.escape(text, quote=False).split("\n"):
        line = _BOLD.sub(r"<b>\1</b>", line)
        if line.startswith("⚠️") and "<b>" not in line:
            line = f"<b>{line}</b>"
        lines.append(line)
    return "\n".join(lines)


def split_message(text: str, limit: int = LIMIT) -> list[str]:
    """Split text into parts of at most `limit`, at paragraph, line, sentence or word ends."""
    text = text.strip()
    if not text:
        return []
    parts: list[str] = []
    current = ""
    for piece in _pieces(text, limit):
        joined = f"{current}{piece}" if current else piece.lstrip("\n")
        if utf16_len(joined.rstrip()) <= limit:
            current = joined
        else:
            parts.append(current.rstrip())
            current = piece.lstrip("\n ")
    if current.strip():
        parts.append(current.rstrip())
    return [p for p in parts if p]


def _pieces(text: str, limit: int) -> list[str]:
    """Cut text into pieces no longer than `limit`, keeping each separator with its piece."""
    if utf16_len(text) <= limit:
        return [text]
    for separator in ("\n\n", "\n", None, " "):
        chunks = _SENTENCE_END.split(text) if separator is None else text.split(separator)
        if len(chunks) < 2:
            continue
        joiner = " " if separator is None else separator
        pieces: list[str] = []
        for i, chunk in enumerate(chunks):
            inner = _pieces(chunk, limit) or [""]
            if i:  # the separator travels with the piece after it
                inner[0] = joiner + inner[0]
            pieces.extend(inner)
        return pieces
    # One unbroken run longer than the limit: cut it (never inside a surrogate pair).
    out, current = [], ""
    for ch in text:
        if utf16_len(current + ch) > limit:
            out.append(current)
            current = ""
        current += ch
    return [*out, current] if current else out
