"""Load MedQuAD-style XML: one document per topic, one section per answered question."""

from __future__ import annotations

import codecs
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from rag.documents import LoadError, Section, SourceDocument, guess_language
from rag.loaders.text import decode_named, folder_name, tidy

_DECLARATION = re.compile(rb"\A\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_DECLARATION_TEXT = re.compile(r"\A\s*<\?xml[^>]*\?>")
# MedQuAD flattens lists into one line as "...text.    - Next item"; give items their own line.
_INLINE_ITEM = re.compile(r"(?<=\S)[ \t]{2,}- ")
_SPACE = re.compile(r"\s+")
_NOT_MEDQUAD = "XML is not a MedQuAD-style <Document> with <QAPairs>"
# Most collections write <Document id source>; NINDS writes <doc docid corpus> with lower-case
# children and CDC partly <DiseaseFile fid source>. All three carry the same answers.
_ROOTS = frozenset({"document", "diseasefile", "doc"})


def load(data: bytes, path: Path, shown: str) -> SourceDocument:
    """Load a MedQuAD <Document>: title from <Focus>, sections from answered <QAPair>s."""
    root, warnings = _parse(data)
    pairs = _child(root, "qapairs")
    if _local(root.tag) not in _ROOTS or pairs is None:
        raise LoadError(_NOT_MEDQUAD)
    sections: list[Section] = []
    for pair in pairs:
        if _local(pair.tag) not in ("qapair", "pair"):
            continue
        answer = _answer(_child(pair, "answer"))
        if not answer:
            continue
        question = _line(_child(pair, "question")) or f"Question {len(sections) + 1}"
        sections.append(Section(heading=question, text=answer))
    if not sections:
        raise LoadError("no answered questions")
    return SourceDocument(
        key=str(path.resolve()),
        path=shown,
        title=_line(_child(root, "focus", "doctitle-focus"))
        or _attr(root, "id", "docid", "fid")
        or path.stem,
        source=_attr(root, "source", "corpus") or folder_name(path),
        url=_attr(root, "url") or None,
        language=guess_language("\n".join(s.text for s in sections)),
        sections=sections,
        warnings=warnings,
    )


def _parse(data: bytes) -> tuple[ET.Element, list[str]]:
    # Bytes, not text: expat then honours the encoding the XML declaration names.
    try:
        return ET.fromstring(data), []
    except ET.ParseError as exc:
        declared = _mismatched_encoding(data)
        if declared is None:
            raise LoadError(f"malformed XML: {exc}") from None
    text, used = decode_named(data)
    try:
        root = ET.fromstring(_DECLARATION_TEXT.sub("", text, count=1))
    except ET.ParseError as exc:
        raise LoadError(f"malformed XML: {exc}") from None
    return root, [f"declared {declared} but is not; read as {used}"]


def _mismatched_encoding(data: bytes) -> str | None:
    """Return the declared encoding when the bytes do not decode with it, else None."""
    if data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None  # expat reads byte-order marks itself; the fault is elsewhere
    match = _DECLARATION.match(data)
    declared = match.group(1).decode("ascii") if match else "UTF-8"  # the XML default
    try:
        data.decode(declared)
    except LookupError:
        return declared  # a name Python does not know either; sniff instead
    except UnicodeDecodeError:
        return declared
    return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()  # without a namespace, case-insensitive


def _child(element: ET.Element, *names: str) -> ET.Element | None:
    return next((child for child in element if _local(child.tag) in names), None)


def _attr(element: ET.Element, *names: str) -> str:
    return next((value.strip() for n in names if (value := element.get(n, "")).strip()), "")


def _line(element: ET.Element | None) -> str:
    if element is None:
        return ""
    return _SPACE.sub(" ", "".join(element.itertext())).strip()


def _answer(element: ET.Element | None) -> str:
    if element is None:
        return ""
    return tidy(_INLINE_ITEM.sub("\n- ", "".join(element.itertext())))
