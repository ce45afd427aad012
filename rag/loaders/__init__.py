"""Turn a guideline file (Markdown, text, HTML, PDF or MedQuAD XML) into a SourceDocument."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import rag
from rag.documents import LoadError, SourceDocument
from rag.loaders import html, markdown, medquad, pdf, text

__all__ = ["SUPPORTED_SUFFIXES", "display_path", "load_file", "parse", "read_file"]

logger = logging.getLogger(__name__)

_ROOT = Path(rag.__file__).resolve().parent.parent
_Loader = Callable[[bytes, Path, str], SourceDocument]
_LOADERS: dict[str, _Loader] = {
    ".md": markdown.load,
    ".markdown": markdown.load,
    ".txt": text.load,
    ".html": html.load,
    ".htm": html.load,
    ".pdf": pdf.load,
    ".xml": medquad.load,
}
SUPPORTED_SUFFIXES = tuple(_LOADERS)
_MB = 1024 * 1024


def display_path(path: Path) -> str:
    """Return `path` relative to the repository when inside it, else its absolute path."""
    # Citations reach patients: never show where the server keeps its bundled files.
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(_ROOT))
    except ValueError:
        return str(resolved)


def read_file(path: Path, max_bytes: int = 200 * _MB) -> bytes:
    """Read a guideline file's bytes after the checks that need no parsing; raise LoadError."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise LoadError("cannot read: not a regular file")
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from None
    if size == 0:
        raise LoadError("empty file")
    if size > max_bytes:
        raise LoadError(f"too large ({size / _MB:.1f} MB > limit {max_bytes / _MB:g} MB)")
    suffix = path.suffix.lower()
    if suffix not in _LOADERS:
        raise LoadError(f"unsupported file type {suffix or '(no suffix)'}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from None


def parse(path: Path, data: bytes) -> SourceDocument:
    """Turn the bytes of `path` into a document, or raise LoadError with a short reason."""
    suffix = path.suffix.lower()
    loader = _LOADERS.get(suffix)
    if loader is None:
        raise LoadError(f"unsupported file type {suffix or '(no suffix)'}")
    if data.isspace():
        raise LoadError("empty file")
    if suffix != ".pdf" and text.is_binary(data):
        raise LoadError("binary content, not text")
    shown = display_path(path)
    try:
        return loader(data, path, shown)
    except LoadError:
        raise
    except Exception as exc:  # parsers of untrusted files fail in many ways; report, never crash
        logger.warning("unexpected error loading %s", shown, exc_info=True)
        raise LoadError(f"could not parse: {exc}") from exc


def load_file(path: Path, max_bytes: int = 200 * _MB) -> SourceDocument:
    """Load one guideline file, or raise LoadError with a short reason."""
    return parse(path, read_file(path, max_bytes))
