"""Load saved web pages: the main content only, one section per h1-h3 heading."""

from __future__ import annotations

import enum
import re
from pathlib import Path

from bs4 import BeautifulSoup
from bs4.element import NavigableString, PageElement, PreformattedString, Tag

from rag.documents import LoadError, Section, SourceDocument, guess_language
from rag.loaders.text import Outline, decode, folder_name

_NOISE = (
    "script",
    "style",
    "noscript",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "template",
    "svg",
    "iframe",
)
_LEVELS = {"h1": 1, "h2": 2, "h3": 3}
_BLOCKS = frozenset(
    {"p", "div", "section", "article", "main", "ul", "ol", "dl", "table", "thead", "tbody"}
    | {"tr", "blockquote", "pre", "figure", "figcaption", "h4", "h5", "h6", "dt", "dd", "hr"}
    | {"details", "summary", "address"}
)
_DATE_NAMES = (
    "dc.date",
    "dcterms.modified",
    "article:modified_time",
    "last-modified",
    "date",
    "dcterms.date",
    "article:published_time",
)
_SPACE = re.compile(r"\s+")


class _Break(enum.Enum):
    LINE = "line"
    PARAGRAPH = "paragraph"


def load(data: bytes, path: Path, shown: str) -> SourceDocument:
    """Load an HTML page: metadata from <head>, sections from the main content."""
    raw, warnings = decode(data)
    # html.parser is lenient: unclosed tags and stray garbage still give a tree.
    soup = BeautifulSoup(raw, "html.parser")
    meta = _meta(soup)
    for tag in soup.find_all(_NOISE):
        tag.decompose()
    sections = _sections(_main(soup))
    if not sections:
        raise LoadError("no readable text")
    body = "\n".join(s.text for s in sections)
    return SourceDocument(
        key=str(path.resolve()),
        path=shown,
        title=_title(soup) or path.stem,
        source=meta.get("og:site_name") or meta.get("author") or folder_name(path),
        url=_canonical(soup) or meta.get("og:url") or None,
        language=_language(soup) or guess_language(body),
        date=next((meta[name] for name in _DATE_NAMES if meta.get(name)), None),
        sections=sections,
        warnings=warnings,
    )


def _meta(soup: BeautifulSoup) -> dict[str, str]:
    # Keyed by whichever of name / property / http-equiv the page used, lower-cased.
    found: dict[str, str] = {}
    for tag in soup.find_all("meta"):
        key = _attr(tag, "name") or _attr(tag, "property") or _attr(tag, "http-equiv")
        content = _attr(tag, "content")
        if key and content:
            found.setdefault(key.lower(), content)
    return found


def _attr(tag: Tag, name: str) -> str:
    value = tag.get(name)
    if value is None:
        return ""
    return (value if isinstance(value, str) else " ".join(value)).strip()


def _title(soup: BeautifulSoup) -> str:
    tag = soup.find("title")
    if tag is not None:
        title = _SPACE.sub(" ", tag.get_text()).strip().split(" | ")[0].strip()
        if title:
            return title
    h1 = soup.find("h1")
    return _SPACE.sub(" ", h1.get_text()).strip() if h1 is not None else ""


def _canonical(soup: BeautifulSoup) -> str:
    for link in soup.find_all("link"):
        if "canonical" in link.get_attribute_list("rel"):
            return _attr(link, "href")
    return ""


def _language(soup: BeautifulSoup) -> str:
    html = soup.find("html")
    if html is None:
        return ""
    lang = _attr(html, "lang") or _attr(html, "xml:lang")
    return lang[:2].lower() if lang[:2].isalpha() else ""


def _main(soup: BeautifulSoup) -> Tag:
    candidates = (soup.find("main"), soup.find("article"), soup.find(None, {"role": "main"}))
    for tag in candidates:
        if tag is not None and tag.get_text(strip=True):
            return tag
    return soup.body or soup


def _sections(root: Tag) -> list[Section]:
    # An explicit stack instead of recursion: broken pages can nest thousands of unclosed tags.
    out = _Builder()
    stack: list[PageElement | _Break] = list(reversed(root.contents))
    while stack:
        node = stack.pop()
        if isinstance(node, _Break):
            out.end(node)
        elif isinstance(node, PreformattedString):
            continue  # comments, doctypes, CDATA, processing instructions
        elif isinstance(node, NavigableString):
            out.add(str(node))
        elif isinstance(node, Tag):
            if node.name in _LEVELS:
                out.heading(_LEVELS[node.name], _SPACE.sub(" ", node.get_text(" ")).strip())
                continue
            if node.name == "br":
                out.end(_Break.LINE)
                continue
            end = _opening(node, out)
            if end is not None:
                stack.append(end)
            stack.extend(reversed(node.contents))
    return out.finish()


def _opening(node: Tag, out: _Builder) -> _Break | None:
    if node.name == "li":
        out.end(_Break.LINE)
        out.add("- ")
        return _Break.LINE
    if node.name in ("td", "th"):
        out.add(" ")  # keep table cells apart
        return None
    if node.name in _BLOCKS:
        out.end(_Break.PARAGRAPH)
        return _Break.PARAGRAPH
    return None


class _Builder:
    """Collect lines and paragraphs into sections as the page is walked."""

    def __init__(self) -> None:
        self._outline = Outline()
        self._sections: list[Section] = []
        self._heading = "Overview"
        self._lines: list[str] = []
        self._line: list[str] = []

    def add(self, text: str) -> None:
        self._line.append(text)

    def end(self, kind: _Break) -> None:
        line = _SPACE.sub(" ", "".join(self._line)).strip()
        self._line = []
        if line and line != "-":
            self._lines.append(line)
        if kind is _Break.PARAGRAPH and self._lines and self._lines[-1]:
            self._lines.append("")

    def heading(self, level: int, text: str) -> None:
        self._close()
        self._heading = self._outline.name(level, text) if text else self._heading

    def finish(self) -> list[Section]:
        self._close()
        return self._sections

    def _close(self) -> None:
        self.end(_Break.LINE)
        text = "\n".join(self._lines).strip()
        if text:
            self._sections.append(Section(heading=self._heading, text=text))
        self._lines = []
