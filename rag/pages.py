"""Load guideline pages (Markdown with a YAML header) and split them into section passages."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

BUNDLED = Path(__file__).with_name("guidelines")
_ROOT = Path(__file__).resolve().parent.parent


def _display_path(path: Path) -> str:
    # Citations reach patients: show bundled pages relative to the project, not the server.
    try:
        return str(path.resolve().relative_to(_ROOT))
    except ValueError:
        return str(path)


_HEADING = re.compile(r"^(#{1,3})\s+(.*)$", re.MULTILINE)


class Passage(BaseModel):
    """A section of a guideline page: the unit that is retrieved and cited."""

    id: str
    title: str
    source: str
    section: str
    path: str
    language: str = "en"
    audience: str = Field(default="all", description="all | adults | children")
    text: str
    urls: list[str] = Field(default_factory=list)


def load_page(path: Path) -> list[Passage]:
    """Split one page into passages, one per `##` section (the intro counts as one)."""
    raw = path.read_text(encoding="utf-8")
    meta: dict[str, object] = {}
    if raw.startswith("---\n"):
        header, _, raw = raw[4:].partition("\n---\n")
        meta = yaml.safe_load(header) or {}
    title = str(meta.get("title") or path.stem)
    common = {
        "title": title,
        "source": str(meta.get("source") or "unknown"),
        "path": _display_path(path),
        "language": str(meta.get("language") or "en"),
        "audience": str(meta.get("audience") or "all"),
        "urls": [str(u) for u in meta.get("sources", []) or []],  # type: ignore[attr-defined]
    }
    passages: list[Passage] = []
    marks = list(_HEADING.finditer(raw))
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(raw)
        body = raw[mark.end() : end].strip()
        if not body:
            continue
        section = "Overview" if len(mark.group(1)) == 1 else mark.group(2).strip()
        passages.append(
            Passage(id=f"{path.stem}#{len(passages)}", section=section, text=body, **common)
        )
    return passages


def load_folder(folder: Path = BUNDLED) -> list[Passage]:
    """Load every page of a folder of guideline pages."""
    return [p for page in sorted(folder.glob("*.md")) for p in load_page(page)]
