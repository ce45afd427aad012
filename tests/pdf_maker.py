"""Write small, valid PDFs by hand for loader tests (no PDF library needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence

_IMAGE_WIDTH = 1024
_PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << %s >> /Contents %s >>"


class _Objects:
    """Numbered PDF objects; a number can be reserved before its body is known."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def reserve(self) -> int:
        self.bodies.append(b"null")
        return len(self.bodies)

    def add(self, body: bytes) -> int:
        self.bodies.append(body)
        return len(self.bodies)

    def set(self, number: int, body: bytes) -> None:
        self.bodies[number - 1] = body

    @staticmethod
    def ref(number: int) -> bytes:
        return b"%d 0 R" % number


def make_pdf(
    pages: Sequence[str | None],
    *,
    title: str | None = None,
    author: str | None = None,
    outline: Sequence[tuple[str, int]] = (),
    big_image_bytes: int = 0,
) -> bytes:
    """Build a PDF: a str page draws its lines in Helvetica, a None page only an image.

    `outline` holds (title, 0-based page index) bookmarks; `big_image_bytes` adds one more
    page drawing an image of that many random (incompressible) bytes.
    """
    objs = _Objects()
    catalog, tree = objs.reserve(), objs.reserve()  # the pages point back at the tree: 2 0 R
    font = objs.add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids = [
        _image_page(objs, os.urandom(64), 8) if lines is None else _text_page(objs, lines, font)
        for lines in pages
    ]
    if big_image_bytes:
        size = big_image_bytes - big_image_bytes % _IMAGE_WIDTH
        kids.append(_image_page(objs, os.urandom(size), _IMAGE_WIDTH))
    refs = b" ".join(objs.ref(kid) for kid in kids)
    objs.set(tree, b"<< /Type /Pages /Kids [%s] /Count %d >>" % (refs, len(kids)))
    root = b"<< /Type /Catalog /Pages %s" % objs.ref(tree)
    if outline:
        root += b" /Outlines %s" % objs.ref(_outline(objs, outline, kids))
    objs.set(catalog, root + b" >>")
    trailer = b"/Root %s" % objs.ref(catalog)
    fields = [(b"/Title", title), (b"/Author", author)]
    entries = [key + b" (" + _escape(value) + b")" for key, value in fields if value is not None]
    if entries:
        trailer += b" /Info %s" % objs.ref(objs.add(b"<< " + b" ".join(entries) + b" >>"))
    return _serialise(objs.bodies, trailer)


def _text_page(objs: _Objects, lines: str, font: int) -> int:
    ops = b"\n".join(
        b"BT /F1 12 Tf 72 %d Td (%s) Tj ET" % (720 - 16 * i, _escape(line))
        for i, line in enumerate(lines.split("\n"))
    )
    content = objs.add(_stream(b"", ops))
    resources = b"/Font << /F1 %s >>" % objs.ref(font)
    return objs.add(_PAGE % (resources, objs.ref(content)))


def _image_page(objs: _Objects, pixels: bytes, width: int) -> int:
    # An 8-bit grey image, as a scanner makes: no text operators on the page at all.
    image = objs.add(
        _stream(
            b"/Type /XObject /Subtype /Image /Width %d /Height %d"
            b" /ColorSpace /DeviceGray /BitsPerComponent 8" % (width, len(pixels) // width),
            pixels,
        )
    )
    content = objs.add(_stream(b"", b"q 540 0 0 720 36 36 cm /Im1 Do Q"))
    resources = b"/XObject << /Im1 %s >>" % objs.ref(image)
    return objs.add(_PAGE % (resources, objs.ref(content)))


def _outline(objs: _Objects, marks: Sequence[tuple[str, int]], kids: list[int]) -> int:
    root = objs.reserve()
    items = [objs.reserve() for _ in marks]
    for i, (text, page) in enumerate(marks):
        links = b""
        if i > 0:
            links += b" /Prev %s" % objs.ref(items[i - 1])
        if i + 1 < len(items):
            links += b" /Next %s" % objs.ref(items[i + 1])
        body = b"<< /Title (%s) /Parent %s%s /Dest [%s /Fit] >>"
        objs.set(items[i], body % (_escape(text), objs.ref(root), links, objs.ref(kids[page])))
    first, last = objs.ref(items[0]), objs.ref(items[-1])
    objs.set(
        root, b"<< /Type /Outlines /First %s /Last %s /Count %d >>" % (first, last, len(items))
    )
    return root


def _stream(entries: bytes, payload: bytes) -> bytes:
    head = b"<< %s /Length %d >>" % (entries, len(payload))
    return head + b"\nstream\n" + payload + b"\nendstream"


def _escape(text: str) -> bytes:
    raw = text.encode("latin-1")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _serialise(bodies: list[bytes], trailer: bytes) -> bytes:
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")  # binary comment: "this file is binary"
    offsets = []
    for number, body in enumerate(bodies, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(bodies) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d %s >>\n" % (len(bodies) + 1, trailer)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)
