"""What a loader produces: a guideline document split into its own sections, with metadata."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

_CJK = re.compile(r"[\u3400-\u9fff]")
_LETTER = re.compile(r"[A-Za-z\u3400-\u9fff]")


class Section(BaseModel):
    """A part of a document under one heading (a Markdown section, a Q/A pair, a PDF page)."""

    heading: str = Field(description="Section heading; 'Overview' for text before any heading.")
    text: str
    page: int | None = Field(default=None, description="1-based PDF page, when known.")


class SourceDocument(BaseModel):
    """One guideline document as loaded from a file, before chunking."""

    key: str = Field(description="Stable identity of the document: its resolved file path.")
    path: str = Field(description="Path shown in citations (relative to the project if inside).")
    title: str
    source: str = Field(description="Publisher or collection, e.g. 'NHS' or 'GARD'.")
    url: str | None = None
    language: str = "en"
    date: str | None = Field(default=None, description="Reviewed or published date, if known.")
    audience: str = Field(default="all", description="all | adults | children")
    urls: list[str] = Field(default_factory=list, description="Public sources consulted.")
    sections: list[Section]
    warnings: list[str] = Field(default_factory=list, description="Recoverable problems.")


class LoadError(Exception):
    """A file that cannot be turned into a document; `reason` is shown in the ingest summary."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def guess_language(text: str) -> str:
    """Return 'zh' when most letters are Chinese characters, else 'en'."""
    sample = text[:4000]
    letters = len(_LETTER.findall(sample))
    if letters and len(_CJK.findall(sample)) / letters > 0.3:
        return "zh"
    return "en"
