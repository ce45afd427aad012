"""Decode text files of unknown encoding, and load plain-text guidelines."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from rag.documents import LoadError, Section, SourceDocument, guess_language

# UTF-32 before UTF-16: the UTF-32-LE mark starts with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)
_WIDE_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# C0 controls other than tab, newline, form feed and carriage return, plus DEL.
_CONTROLS = bytes([*range(0, 9), 11, *range(14, 32), 127])
_SNIFF = 8192
_INLINE_SPACE = re.compile(r"[^\S\n]+")
_BLANK_RUNS = re.compile(r"\n{3,}")
_BULLET = re.compile(r"^\s*([-*•]|\d+[.)])\s")
_HEADING_END = tuple(".,;:!?。，；：！？")


def decode_named(data: bytes) -> tuple[str, str]:
    """Decode `data` by its byte-order mark, else as UTF-8, else Windows-1252; name the codec."""
    for bom, codec, name in _BOMS:
        if data.startswith(bom):
            # The mark is a strong claim; keep what decodes rather than guess another codec.
            return _newlines(data.decode(codec, errors="replace")), name
    try:
        return _newlines(data.decode("utf-8")), "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        return _newlines(data.decode("cp1252")), "Windows-1252"
    except UnicodeDecodeError:
        # cp1252 leaves five bytes undefined; Latin-1 maps every byte.
        return _newlines(data.decode("latin-1")), "Latin-1"


def decode(data: bytes) -> tuple[str, list[str]]:
    """Decode `data` to text, with a warning when it had to fall back from UTF-8."""
    text, name = decode_named(data)
    if name in ("Windows-1252", "Latin-1"):
        return text, [f"not valid UTF-8; read as {name}"]
    return text, []


def is_binary(data: bytes) -> bool:
    """Tell whether `data` looks like binary content rather than text."""
    head = data[:_SNIFF]
    if head.startswith(_WIDE_BOMS):
        return False  # UTF-16/32 text is full of NUL bytes
    if b"\0" in head:
        return True
    controls = len(head) - len(head.translate(None, _CONTROLS))
    return controls > len(head) * 0.1


def tidy(text: str, *, keep_indent: bool = False) -> str:
    """Collapse runs of spaces, strip lines and keep at most one blank line between paragraphs."""
    if keep_indent:
        lines = [line.rstrip() for line in text.split("\n")]
    else:
        lines = [_INLINE_SPACE.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


class Outline:
    """Name sections after headings: the first level 1 is the title, level 3 nests under 2."""

    def __init__(self) -> None:
        self._parent: str | None = None
        self._titled = False

    def name(self, level: int, heading: str) -> str:
        """Return the section name for a heading of `level` (1-3)."""
        if level <= 1:
            self._parent = None
            if not self._titled:
                self._titled = True
                return "Overview"  # text under the page title introduces the page
            return heading
        if level == 2:
            self._parent = heading
            return heading
        return f"{self._parent} / {heading}" if self._parent else heading


def folder_name(path: Path) -> str:
    """Return the folder a file sits in, as a fallback source name."""
    return path.resolve().parent.name or "unknown"


def load(data: bytes, path: Path, shown: str) -> SourceDocument:
    """Load a plain-text guideline, split on lines that look like headings."""
    raw, warnings = decode(data)
    body = tidy(raw)
    if not body:
        raise LoadError("no readable text")
    first = body.split("\n", 1)[0]
    title = first if len(first) < 100 else path.stem
    outline = Outline()
    sections: list[Section] = []
    heading = "Overview"
    lines: list[str] = []
    blocks = body.split("\n\n")
    for i, block in enumerate(blocks):
        if i + 1 < len(blocks) and _is_heading(block):
            _close(sections, heading, lines)
            heading, lines = outline.name(1 if i == 0 else 2, block), []
        else:
            lines.append(block)
    _close(sections, heading, lines)
    return SourceDocument(
        key=str(path.resolve()),
        path=shown,
        title=title,
        source=folder_name(path),
        language=guess_language(body),
        sections=sections,
        warnings=warnings,
    )


def _is_heading(block: str) -> bool:
    # A short single line standing alone, not a sentence or a list item.
    return (
        "\n" not in block
        and len(block) < 80
        and not block.endswith(_HEADING_END)
        and not _BULLET.match(block)
    )


def _close(sections: list[Section], heading: str, blocks: list[str]) -> None:
    text = "\n\n".join(blocks).strip()
    if text:
        sections.append(Section(heading=heading, text=text))


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")
