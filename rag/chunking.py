"""Split documents into retrievable chunks along their own structure, with stable ids."""

from __future__ import annotations

import hashlib
import re

from pydantic import BaseModel

from rag.documents import SourceDocument
from rag.sanitize import strip_instructions

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?。！？;；])\s+|\n")


class Chunk(BaseModel):
    """A piece of one section: the unit that is embedded, retrieved and cited."""

    id: str
    doc_key: str
    doc_hash: str
    position: int
    title: str
    source: str
    url: str = ""
    path: str
    section: str
    page: int | None = None
    language: str = "en"
    audience: str = "all"
    date: str = ""
    text: str

    def indexed_text(self) -> str:
        """Return the text the indexes see: title and heading give a chunk its topic."""
        return f"{self.title} - {self.section}\n{self.text}"

    def metadata(self) -> dict[str, str | int]:
        """Return the chunk's fields as Chroma metadata (scalars only, no None)."""
        meta: dict[str, str | int] = {
            k: v for k, v in self.model_dump(exclude={"id", "text", "page"}).items()
        }
        if self.page is not None:
            meta["page"] = self.page
        return meta

    @classmethod
    def from_stored(cls, chunk_id: str, text: str, meta: dict[str, object]) -> Chunk:
        """Rebuild a chunk from what an index stored."""
        return cls.model_validate({**meta, "id": chunk_id, "text": text})


def _pieces(text: str, max_chars: int, overlap: int) -> list[str]:
    """Split `text` at paragraph, then sentence, boundaries into pieces of at most `max_chars`.

    Each piece after the first starts with the last sentences (up to `overlap` characters) of
    the one before, so a fact that straddles a boundary is whole in at least one chunk.
    """
    if len(text) <= max_chars:
        return [text]
    units: list[str] = []
    for para in _PARAGRAPH.split(text):
        if len(para) <= max_chars:
            units.append(para.strip())
            continue
        for sentence in _SENTENCE.split(para):
            # A sentence longer than a chunk (a table row, a list without stops) is cut hard.
            units.extend(sentence[i : i + max_chars] for i in range(0, len(sentence), max_chars))
    pieces: list[str] = []
    current: list[str] = []
    for unit in (u for u in units if u.strip()):
        if current and len("\n".join([*current, unit])) > max_chars:
            pieces.append("\n".join(current))
            tail: list[str] = []
            for previous in reversed(current):
                if sum(len(t) for t in tail) + len(previous) > overlap:
                    break
                tail.insert(0, previous)
            current = tail if len("\n".join([*tail, unit])) <= max_chars else []
        current.append(unit)
    if current:
        pieces.append("\n".join(current))
    return pieces


def chunk_id(doc_key: str, section: str, text: str) -> str:
    """Return a chunk's id: a hash of where it comes from and what it says."""
    digest = hashlib.sha256(f"{doc_key}\x00{section}\x00{text}".encode()).hexdigest()
    return digest[:24]


def chunk_document(
    doc: SourceDocument, doc_hash: str, max_chars: int = 1200, overlap: int = 200
) -> tuple[list[Chunk], int]:
    """Return the document's chunks and how many instruction-like sentences were dropped."""
    chunks: list[Chunk] = []
    seen: set[str] = set()
    dropped = 0
    for section in doc.sections:
        text, removed = strip_instructions(section.text.strip())
        dropped += removed
        for piece in _pieces(text, max_chars, overlap) if text else []:
            cid = chunk_id(doc.key, section.heading, piece)
            if cid in seen:  # the same text twice under one heading adds nothing
                continue
            seen.add(cid)
            chunks.append(
                Chunk(
                    id=cid,
                    doc_key=doc.key,
                    doc_hash=doc_hash,
                    position=len(chunks),
                    title=doc.title,
                    source=doc.source,
                    url=doc.url or "",
                    path=doc.path,
                    section=section.heading,
                    page=section.page,
                    language=doc.language,
                    audience=doc.audience,
                    date=doc.date or "",
                    text=piece,
                )
            )
    return chunks, dropped
