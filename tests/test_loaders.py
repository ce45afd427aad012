"""Guideline document loaders: each format's structure and metadata, and bad input."""

from __future__ import annotations

import io
import random
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pypdf import PdfWriter

import rag
from rag.documents import LoadError
from rag.loaders import SUPPORTED_SUFFIXES, display_path, load_file
from tests.pdf_maker import make_pdf

MEDQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "medquad"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def load_error(path: Path, **kwargs: int) -> str:
    with pytest.raises(LoadError) as caught:
        load_file(path, **kwargs)
    return caught.value.reason


# --- Markdown -----------------------------------------------------------------------------


def test_markdown_front_matter_gives_metadata_and_nested_sections(tmp_path: Path) -> None:
    page = write(
        tmp_path,
        "rash.md",
        "---\ntitle: Rashes\nsource: Team\nreviewed: 2025-01-02\nlanguage: en\n"
        "audience: children\nurl: https://example.org/rash\n"
        "sources:\n  - https://example.org/a\n  - https://example.org/b\n---\n"
        "# Rashes in children\n\nMost rashes are harmless.\n\n## What you can do\n- Keep cool.\n"
        "### At night\nUse light covers.\n\n## Empty\n\n## See a doctor if\nIt spreads.\n",
    )
    doc = load_file(page)
    assert (doc.title, doc.source, doc.date, doc.audience) == (
        "Rashes",
        "Team",
        "2025-01-02",
        "children",
    )
    assert doc.url == "https://example.org/rash"
    assert doc.urls == ["https://example.org/a", "https://example.org/b"]
    assert doc.key == str(page.resolve())
    assert [s.heading for s in doc.sections] == [
        "Overview",
        "What you can do",
        "What you can do / At night",
        "See a doctor if",
    ]
    assert doc.sections[1].text == "- Keep cool."
    assert doc.warnings == []


def test_markdown_without_front_matter_uses_heading_and_folder(tmp_path: Path) -> None:
    folder = tmp_path / "nhs"
    folder.mkdir()
    doc = load_file(write(folder, "x.md", "# Burns\n\nCool it.\n\n```sh\n# not a heading\n```\n"))
    assert (doc.title, doc.source, doc.language) == ("Burns", "nhs", "en")
    assert [s.heading for s in doc.sections] == ["Overview"]
    assert "# not a heading" in doc.sections[0].text


def test_malformed_front_matter_is_read_as_text_with_warning(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "bad.md", "---\ntitle: [unclosed\n---\n# Cough\n\nRest.\n"))
    assert doc.title == "Cough"
    assert any("front matter" in w for w in doc.warnings)
    assert "Rest." in doc.sections[-1].text


def test_bundled_page_keeps_its_sections_and_a_relative_path() -> None:
    page = Path(rag.__file__).resolve().parent / "guidelines" / "fever-adults.md"
    doc = load_file(page)
    assert [s.heading for s in doc.sections] == [
        "Overview",
        "What you can do",
        "See a doctor if",
        "Get urgent help today if",
        "Call emergency services if",
    ]
    assert doc.path == "rag/guidelines/fever-adults.md"  # never the server's absolute path
    assert (doc.title, doc.audience, doc.language) == ("Fever in adults", "adults", "en")
    assert doc.date is not None and len(doc.urls) == 4
    # The triage criteria in the front matter are not page text.
    assert not any("says:" in s.text or "criteria" in s.text for s in doc.sections)


def test_display_path_outside_the_repository_is_absolute(tmp_path: Path) -> None:
    assert display_path(tmp_path / "a.md") == str((tmp_path / "a.md").resolve())


def test_chinese_markdown_without_metadata_is_chinese(tmp_path: Path) -> None:
    doc = load_file(
        write(tmp_path, "fa-shao.md", "# 发烧\n\n多喝水，注意休息。\n\n## 何时就医\n高烧不退。\n")
    )
    assert doc.language == "zh"
    assert doc.title == "发烧"


def test_windows_1252_markdown_loads_with_warning(tmp_path: Path) -> None:
    doc = load_file(
        write(tmp_path, "f.md", "# Fièvre\n\nLa fièvre – reposez-vous.\n".encode("cp1252"))
    )
    assert doc.title == "Fièvre"
    assert "fièvre – reposez" in doc.sections[0].text
    assert doc.warnings == ["not valid UTF-8; read as Windows-1252"]


# --- plain text ---------------------------------------------------------------------------


def test_plain_text_splits_on_heading_lines(tmp_path: Path) -> None:
    body = "Sore throat\n\nIt usually gets better in a week.\n\nWhat helps\n\nWarm drinks.\nRest.\n"
    doc = load_file(write(tmp_path, "throat.txt", body))
    assert (doc.title, doc.source) == ("Sore throat", tmp_path.name)
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("Overview", "It usually gets better in a week."),
        ("What helps", "Warm drinks.\nRest."),
    ]


def test_utf16_text_with_bom_is_not_mistaken_for_binary(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "t.txt", "Drink   water  often.\n".encode("utf-16")))
    assert doc.sections[0].text == "Drink water often."


# --- HTML ---------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html><html lang="en-GB"><head><title>Fever | Health Site</title>
<meta property="og:site_name" content="Health Site">
<meta name="dcterms.modified" content="2024-05-06">
<link rel="canonical" href="https://example.org/fever"><style>p {color: red}</style></head>
<body><header>Site header</header><nav><a href="/">Home</a> Menu</nav>
<main><h1>Fever</h1><p>A high   temperature
 is common.</p><!-- hidden note --><script>track()</script>
<h2>Treatment</h2><ul><li>Rest</li><li>Drink <b>fluids</b></li></ul>
<h3>At home</h3><p>Keep cool.</p><aside>Related links</aside></main>
<footer>Copyright</footer></body></html>"""


def test_html_keeps_main_content_and_reads_metadata(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "fever.html", PAGE))
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("Overview", "A high temperature is common."),
        ("Treatment", "- Rest\n- Drink fluids"),
        ("Treatment / At home", "Keep cool."),
    ]
    text = " ".join(s.text for s in doc.sections)
    for noise in ("Menu", "header", "Copyright", "track", "color", "Related", "hidden"):
        assert noise not in text
    assert (doc.title, doc.source, doc.language) == ("Fever", "Health Site", "en")
    assert (doc.url, doc.date) == ("https://example.org/fever", "2024-05-06")


def test_html_without_main_uses_article_and_chinese_lang(tmp_path: Path) -> None:
    page = (
        '<html lang="zh-CN"><body><div>Sidebar</div><article><p>多喝水</p></article></body></html>'
    )
    doc = load_file(write(tmp_path, "zh.htm", page))
    assert doc.sections[0].text == "多喝水"
    assert (doc.language, doc.title, doc.source) == ("zh", "zh", tmp_path.name)


def test_broken_html_still_loads_its_text(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "b.html", "<html><body><div><p>Rest well<p>Drink <b>fluids<<>"))
    text = doc.sections[0].text
    assert "Rest well" in text and "Drink fluids" in text


def test_html_with_only_scripts_has_no_text(tmp_path: Path) -> None:
    page = "<html><head><script>var a = 1;</script></head><body><script>go()</script></body></html>"
    assert load_error(write(tmp_path, "s.html", page)) == "no readable text"


# --- PDF ----------------------------------------------------------------------------------


def test_pdf_has_one_section_per_page(tmp_path: Path) -> None:
    pages = ["Chest pain\nCall for help (now).", "Second page", "Third page"]
    doc = load_file(
        write(tmp_path, "c.pdf", make_pdf(pages, title="Chest pain guide", author="Team"))
    )
    assert [(s.heading, s.page) for s in doc.sections] == [
        ("Page 1", 1),
        ("Page 2", 2),
        ("Page 3", 3),
    ]
    assert doc.sections[0].text == "Chest pain\nCall for help (now)."
    assert (doc.title, doc.source, doc.warnings) == ("Chest pain guide", "Team", [])


def test_pdf_bookmarks_head_pages_and_first_line_is_title(tmp_path: Path) -> None:
    pdf = make_pdf(["Burns first aid", None, "More", "Later"], outline=[("Intro", 0), ("End", 3)])
    doc = load_file(write(tmp_path, "b.pdf", pdf))
    assert [(s.heading, s.page) for s in doc.sections] == [("Intro", 1), ("Intro", 3), ("End", 4)]
    assert (doc.title, doc.source) == ("Burns first aid", tmp_path.name)
    assert doc.warnings == ["1 page without text"]


def test_large_pdf_loads_its_text_pages_quickly(tmp_path: Path) -> None:
    pdf = make_pdf(["Page one text", "Page two text"], big_image_bytes=50 * 1024 * 1024)
    path = write(tmp_path, "big.pdf", pdf)
    start = time.perf_counter()
    doc = load_file(path)
    assert time.perf_counter() - start < 5
    assert [s.text for s in doc.sections] == ["Page one text", "Page two text"]


def test_scanned_pdf_asks_for_ocr(tmp_path: Path) -> None:
    assert "OCR" in load_error(write(tmp_path, "scan.pdf", make_pdf([None, None])))


@pytest.mark.parametrize(
    "content",
    [make_pdf(["Some text", "More"])[:300], b"%PDF-1.4\n" + random.Random(1).randbytes(4000)],
    ids=["truncated", "garbage"],
)
def test_corrupt_pdf_is_a_load_error(tmp_path: Path, content: bytes) -> None:
    assert load_error(write(tmp_path, "bad.pdf", content))


def test_encrypted_pdf_is_refused_but_an_empty_password_opens(tmp_path: Path) -> None:
    for password, name in (("secret", "locked.pdf"), ("", "open.pdf")):
        writer = PdfWriter(clone_from=io.BytesIO(make_pdf(["Private text"])))
        writer.encrypt(password)
        writer.write(tmp_path / name)
    assert load_error(tmp_path / "locked.pdf") == "encrypted PDF"
    assert load_file(tmp_path / "open.pdf").sections[0].text == "Private text"


# --- MedQuAD XML --------------------------------------------------------------------------


def medquad(answer: str = "Rest   and drink.", encoding: str = "UTF-8") -> str:
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        '<Document id="0001" source="TestSource" url="https://example.org/doc">'
        "<Focus>Fever</Focus><QAPairs>"
        '<QAPair pid="1"><Question qid="1" qtype="information">What is\n  fever ?</Question>'
        f"<Answer>  A high temperature.\n\n\n   {answer}  </Answer></QAPair>"
        '<QAPair pid="2"><Question qid="2">Unanswered ?</Question><Answer> </Answer></QAPair>'
        "</QAPairs></Document>"
    )


def test_medquad_document_gives_one_section_per_answer(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "q.xml", medquad()))
    assert (doc.title, doc.source, doc.url) == ("Fever", "TestSource", "https://example.org/doc")
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("What is fever ?", "A high temperature.\n\nRest and drink.")
    ]
    assert doc.warnings == []


def test_latin1_bytes_declared_utf8_are_read_with_warning(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "l.xml", medquad("La fièvre.").encode("latin-1")))
    assert "La fièvre." in doc.sections[0].text
    assert doc.warnings == ["declared UTF-8 but is not; read as Windows-1252"]


def test_declared_latin1_and_utf16_with_bom_load_cleanly(tmp_path: Path) -> None:
    latin = medquad("La fièvre.", encoding="ISO-8859-1").encode("latin-1")
    wide = medquad("La fièvre.", encoding="UTF-16").encode("utf-16")
    for name, content in (("latin.xml", latin), ("wide.xml", wide)):
        doc = load_file(write(tmp_path, name, content))
        assert "La fièvre." in doc.sections[0].text
        assert doc.warnings == []


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("<Document><QAPairs><QAPair>", "malformed XML: "),
        ("<rss><channel><title>News</title></channel></rss>", "not a MedQuAD-style"),
        (medquad(answer="").replace("A high temperature.", ""), "no answered questions"),
    ],
    ids=["malformed", "not-medquad", "unanswered"],
)
def test_bad_xml_is_a_load_error(tmp_path: Path, content: str, reason: str) -> None:
    assert reason in load_error(write(tmp_path, "x.xml", content))


def test_real_medquad_files_match_elementtree() -> None:
    if not MEDQUAD.is_dir():
        pytest.skip("MedQuAD data not present")
    for folder in sorted(p for p in MEDQUAD.iterdir() if p.is_dir())[:4]:
        path = sorted(folder.glob("*.xml"))[0]
        root = ET.parse(path).getroot()
        answered = [
            " ".join((pair.findtext("Question") or "").split())
            for pair in root.iter("QAPair")
            if (pair.findtext("Answer") or "").strip()
        ]
        doc = load_file(path)
        assert doc.title == " ".join((root.findtext("Focus") or "").split())
        assert (doc.source, doc.url) == (root.get("source"), root.get("url"))
        assert [s.heading for s in doc.sections] == answered
        assert answered


# --- checks before parsing ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.md", b"", "empty file"),
        ("blank.txt", b"  \n\t\r\n ", "empty file"),
        ("image.md", PNG + bytes(64), "binary content, not text"),
        ("notes.docx", b"PK\x03\x04 some zip", "unsupported file type .docx"),
    ],
)
def test_unusable_files_are_refused(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    assert load_error(write(tmp_path, name, content)) == reason


def test_missing_directory_and_too_large_files(tmp_path: Path) -> None:
    assert load_error(tmp_path / "gone.md").startswith("cannot read: ")
    assert load_error(tmp_path).startswith("cannot read: ")
    reason = load_error(write(tmp_path, "big.md", "# Big\n\n" + "x" * 5000), max_bytes=1000)
    assert reason.startswith("too large (0.0 MB > limit")


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_random_bytes_never_raise_anything_but_load_error(tmp_path: Path, suffix: str) -> None:
    noise = random.Random(suffix).randbytes(3000)
    for content in (noise, noise.replace(b"\0", b"a")):
        try:
            load_file(write(tmp_path, f"noise{suffix}", content))
        except LoadError as exc:
            assert exc.reason and "Traceback" not in exc.reason
