"""Load PDF guidelines with a text layer: one section per page, headed by its bookmark."""

from __future__ import annotations

import bisect
import io
import logging
from pathlib import Path
from typing import Any

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, PyPdfError
from pypdf.generic import Destination

from rag.documents import LoadError, Section, SourceDocument, guess_language
from rag.loaders.text import folder_name, tidy

logger = logging.getLogger(__name__)


def load(data: bytes, path: Path, shown: str) -> SourceDocument:
    """Load a PDF: metadata from its info dictionary, one section per page with text."""
    # PdfReader(path) would read the whole file into memory too; reuse the bytes we hold.
    try:
        reader = PdfReader(io.BytesIO(data))
    except DependencyError:
        raise LoadError("encrypted PDF") from None  # an AES file without a crypto library
    except PyPdfError as exc:
        raise LoadError(f"not a readable PDF: {exc}") from None
    if reader.is_encrypted and _locked(reader):
        raise LoadError("encrypted PDF")
    warnings: list[str] = []
    marks = _bookmarks(reader, warnings)
    sections: list[Section] = []
    blank = 0
    for number, page in enumerate(reader.pages, start=1):
        try:
            text = tidy(page.extract_text())
        except Exception:  # pypdf raises many types on damaged pages; keep the others
            logger.debug("text extraction failed on page %d of %s", number, shown, exc_info=True)
            warnings.append(f"page {number}: could not extract text")
            continue
        if not text:
            blank += 1
            continue
        sections.append(Section(heading=_heading(marks, number), text=text, page=number))
    if not sections:
        raise LoadError("no text layer (a scanned PDF?); OCR is not supported")
    if blank:
        warnings.append(f"{blank} page{'s' if blank > 1 else ''} without text")
    info = _info(reader)
    body = "\n".join(s.text for s in sections)
    return SourceDocument(
        key=str(path.resolve()),
        path=shown,
        title=info.get("/Title") or _first_line(sections) or path.stem,
        source=info.get("/Author") or folder_name(path),
        language=_catalog_language(reader) or guess_language(body),
        sections=sections,
        warnings=warnings,
    )


def _locked(reader: PdfReader) -> bool:
    # Many PDFs are "encrypted" only to set permissions and open with an empty password.
    try:
        return reader.decrypt("") == PasswordType.NOT_DECRYPTED
    except (PyPdfError, DependencyError, NotImplementedError):
        return True


def _bookmarks(reader: PdfReader, warnings: list[str]) -> list[tuple[int, str]]:
    """Return (1-based first page, title) of every outline item, sorted by page."""
    try:
        items: list[Any] = list(reversed(reader.outline))  # a stack, popped in reading order
        marks: list[tuple[int, str]] = []
        while items:
            item = items.pop()
            if isinstance(item, list):
                items.extend(reversed(item))
            elif isinstance(item, Destination):
                index = reader.get_destination_page_number(item)
                title = " ".join(str(item.title or "").split())
                if index is not None and index >= 0 and title:
                    marks.append((index + 1, title))
    except Exception:  # a damaged outline only costs the headings, not the text
        logger.debug("outline unreadable", exc_info=True)
        warnings.append("could not read the bookmarks; pages are headed by number")
        return []
    # Sort by page only (stable): bookmarks of one page stay in reading order.
    return sorted(marks, key=lambda mark: mark[0])


def _heading(marks: list[tuple[int, str]], number: int) -> str:
    # Prefer the first bookmark starting on this page, else the last one before it.
    pages = [page for page, _ in marks]
    at = bisect.bisect_left(pages, number)
    if at < len(pages) and pages[at] == number:
        return marks[at][1]
    return marks[at - 1][1] if at else f"Page {number}"


def _info(reader: PdfReader) -> dict[str, str]:
    try:
        meta = reader.metadata
        if meta is None:
            return {}
        found = {key: " ".join(str(meta.get(key) or "").split()) for key in ("/Title", "/Author")}
    except PyPdfError:
        return {}
    return {key: value for key, value in found.items() if value}


def _catalog_language(reader: PdfReader) -> str:
    try:
        lang = str(reader.root_object.get("/Lang") or "")
    except PyPdfError:
        return ""
    return lang[:2].lower() if lang[:2].isalpha() else ""


def _first_line(sections: list[Section]) -> str:
    if sections[0].page != 1:
        return ""
    line = sections[0].text.split("\n", 1)[0].strip()
    return line if len(line) < 120 else ""
