"""Render the dashboard's pages from Jinja templates; every value is HTML-escaped."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from bot.models import utcnow

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")
HEADERS = {
    # Scripts and styles come only from /dashboard/static: injected markup could not run.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # pages show patient data: no copies in caches
}


def age(since: datetime, now: datetime | None = None) -> str:
    """Say how long ago `since` was: "40 s", "12 min", "3 h 05 min", "2 d 4 h"."""
    seconds = max(0, int(((now or utcnow()) - since).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 24:
        return f"{hours} h {minutes % 60:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def first_line(text: str, limit: int = 160) -> str:
    """The first non-empty line of `text`, cut at `limit` characters."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def clock(at: datetime) -> str:
    """A UTC time for tables: "2026-11-23 18:06 UTC"."""
    return at.strftime("%Y-%m-%d %H:%M UTC")


class Pages:
    """The dashboard's templates; a missing variable fails loudly instead of rendering blank."""

    def __init__(self, folder: Path = TEMPLATES) -> None:
        self.env = Environment(
            loader=FileSystemLoader(folder),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(age=age, first_line=first_line, clock=clock)

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        """Render template `name` as a response with the dashboard's security headers."""
        html = self.env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers=HEADERS)
