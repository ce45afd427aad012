"""Load Markdown guideline pages with an optional YAML front matter, one section per heading."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import yaml

from rag.documents import LoadError, Section, SourceDocument, guess_language
from rag.loaders.text import Outline, decode, folder_name, tidy

_OPEN = re.compile(r"---[ \t]*\n")
_FRONT = re.compile(r"\A---[ \t]*\n(.*?)^---[ \t]*(?:\n|\Z)", re.DOTALL | re.MULTILINE)
_HEADING = re.compile(r"^(#{1,3})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^[ \t]{0,3}(```|~~~)")


def load(data: bytes, path: Path, shown: str) -> SourceDocument:
    """Load a Markdown page: metadata from its front matter, sections from its headings."""
    raw, warnings = decode(data)
    meta, body = _front_matter(raw, warnings)
    sections, first_title = _sections(body)
    if not sections:
        raise LoadError("no readable text")
    return SourceDocument(
        key=str(path.resolve()),
        path=shown,
        title=_text(meta.get("title")) or first_title or path.stem,
        source=_text(meta.get("source")) or folder_name(path),
        url=_text(meta.get("url")) or None,
        language=_text(meta.get("language")) or guess_language(body),
        date=_text(meta.get("reviewed")) or _text(meta.get("date")) or None,
        audience=_text(meta.get("audience")) or "all",
        urls=_urls(meta.get("sources")),
        sections=sections,
        warnings=warnings,
    )


def _front_matter(raw: str, warnings: list[str]) -> tuple[dict[str, object], str]:
    if not _OPEN.match(raw):
        return {}, raw
    match = _FRONT.match(raw)
    if match is None:
        warnings.append("front matter is not closed by '---'; read as text")
        return {}, raw
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        meta = "invalid"
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        warnings.append("front matter is not valid YAML key: value pairs; read as text")
        return {}, raw
    return {str(k): v for k, v in meta.items()}, raw[match.end() :]


def _sections(body: str) -> tuple[list[Section], str | None]:
    outline = Outline()
    sections: list[Section] = []
    first_title: str | None = None
    heading = "Overview"
    lines: list[str] = []
    in_fence = False
    for line in body.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence  # a '# comment' inside a code block is not a heading
        match = None if in_fence else _HEADING.match(line)
        if match is None:
            lines.append(line)
            continue
        _close(sections, heading, lines)
        level, text = len(match.group(1)), match.group(2).strip()
        if level == 1 and first_title is None:
            first_title = text
        heading, lines = outline.name(level, text), []
    _close(sections, heading, lines)
    return sections, first_title


def _close(sections: list[Section], heading: str, lines: list[str]) -> None:
    text = tidy("\n".join(lines), keep_indent=True)
    if text:
        sections.append(Section(heading=heading, text=text))


def _text(value: object) -> str:
    # YAML turns `reviewed: 2026-11-23` into a date and `title: 2024` into an int.
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value).strip()


def _urls(value: object) -> list[str]:
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, list):
        return [str(u).strip() for u in value if u is not None and str(u).strip()]
    return []
