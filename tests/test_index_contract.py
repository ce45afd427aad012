"""One contract for the guideline index, run against embedded Chroma and a real Chroma server.

A clinic may point `CHROMA_URL` at its own `chroma run` server; everything CareBot relies on
(upsert by id, metadata filters, cosine distances, paging, drop) must behave the same there.
"""

from __future__ import annotations

import itertools
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import load_settings
from rag.chunking import Chunk
from rag.errors import IndexUnavailable
from rag.index import GuidelineIndex
from rag.library import GuidelineLibrary
from tests.servers import ChromaServer

MODEL = "contract-test-model"


def _chroma_binary() -> Path | None:
    beside_python = Path(sys.executable).with_name("chroma")
    found = shutil.which("chroma")
    return beside_python if beside_python.exists() else (Path(found) if found else None)


def _start(workdir: Path) -> ChromaServer:
    binary = _chroma_binary()
    if binary is None:  # chromadb always ships the CLI; its absence is a broken install
        pytest.fail("the chroma CLI is not installed beside chromadb")
    return ChromaServer(workdir, binary)


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    server = _start(tmp_path_factory.mktemp("chroma"))
    yield server
    server.stop()


@pytest.fixture
def private_chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    """A server of the test's own, for tests that stop it or need a fresh collection."""
    server = _start(tmp_path)
    yield server
    server.stop()


@pytest.fixture(params=["embedded", "server"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GuidelineIndex]:
    url = request.getfixturevalue("chroma_server").url if request.param == "server" else None
    made = GuidelineIndex(tmp_path / "index", MODEL, chroma_url=url)
    made.drop()  # the server outlives one test; every test starts from an empty collection
    yield made
    made.drop()


def chunk(n: int, doc: str = "a", language: str = "en", source: str = "Clinic A") -> Chunk:
    return Chunk(
        id=f"{doc}-{n}",
        doc_key=doc,
        doc_hash=f"hash-{doc}",
        position=n,
        title=f"Topic {doc}",
        source=source,
        path=f"/guides/{doc}.md",
        section=f"Section {n}",
        page=n if n % 2 else None,
        language=language,
        text=f"Passage {n} of {doc} about hiccups and water.",
    )


def unit(i: int, dim: int = 8) -> list[float]:
    return [1.0 if j == i % dim else 0.0 for j in range(dim)]


def test_add_count_documents_and_stats(index: GuidelineIndex) -> None:
    index.add([chunk(0), chunk(1), chunk(0, "b", "zh", "Clinic B")], [unit(0), unit(1), unit(2)])
    assert index.count() == 3
    docs = index.documents()
    assert sorted(docs) == ["a", "b"]
    assert sorted(docs["a"].chunk_ids) == ["a-0", "a-1"]
    assert docs["a"].doc_hash == "hash-a" and docs["a"].path == "/guides/a.md"
    stats = index.stats()
    assert (stats.documents, stats.chunks) == (2, 3)
    assert stats.languages == {"en": 1, "zh": 1}
    assert stats.sources == {"Clinic A": 1, "Clinic B": 1}


def test_upsert_overwrites_and_delete_removes(index: GuidelineIndex) -> None:
    index.add([chunk(0), chunk(1)], [unit(0), unit(1)])
    changed = chunk(0).model_copy(update={"text": "Rewritten passage."})
    index.add([changed], [unit(3)])
    assert index.count() == 2
    assert index.chunk("a-0").text == "Rewritten passage."
    assert index.embeddings(["a-0"])["a-0"] == pytest.approx(unit(3))
    index.delete(["a-1"])
    assert index.count() == 1
    assert index.lexical().search("passage", 5)  # rebuilt without the deleted chunk
    assert "a-1" not in {cid for cid, _ in index.lexical().search("passage", 5)}


def test_dense_search_ranks_by_cosine_and_applies_filters(index: GuidelineIndex) -> None:
    index.add(
        [chunk(0), chunk(1), chunk(0, "b", "zh", "Clinic B"), chunk(1, "b", "zh", "Clinic B")],
        [unit(0), [0.9, 0.1] + [0.0] * 6, unit(2), [0.7, 0.0, 0.7] + [0.0] * 5],
    )
    hits = index.dense(unit(0), k=4)
    assert [h.chunk.id for h in hits][:2] == ["a-0", "a-1"]
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert all(a.similarity >= b.similarity for a, b in itertools.pairwise(hits))
    assert [h.chunk.id for h in index.dense(unit(0), k=4, language="zh")] == ["b-1", "b-0"]
    assert {h.chunk.id for h in index.dense(unit(0), k=4, sources=["Clinic B"])} == {"b-0", "b-1"}
    assert index.dense(unit(0), k=4, language="zh", sources=["Clinic A"]) == []
    assert index.chunk_ids("zh", None) == {"b-0", "b-1"}
    assert index.chunk_ids(None, None) is None


def test_metadata_round_trips_through_the_store(index: GuidelineIndex) -> None:
    index.add([chunk(1), chunk(2)], [unit(1), unit(2)])
    assert index.chunk("a-1") == chunk(1)
    assert index.chunk("a-2").page is None


def test_paging_reads_more_rows_than_one_page(index: GuidelineIndex) -> None:
    many = [chunk(n) for n in range(2300)]  # more than one page of 2,000 rows
    index.add(many, [unit(n) for n in range(2300)])
    assert len(index.documents()["a"].chunk_ids) == 2300


def test_drop_empties_the_index(index: GuidelineIndex) -> None:
    index.add([chunk(0)], [unit(0)])
    index.drop()
    assert index.count() == 0 and index.documents() == {}
    assert index.dense(unit(0), k=3) == []


def test_a_different_embedding_model_is_refused(index: GuidelineIndex, tmp_path: Path) -> None:
    url = None if index.location.endswith("chroma") else index.location
    with pytest.raises(IndexUnavailable, match="run `carebot index drop`"):
        GuidelineIndex(tmp_path / "index", "another-model", chroma_url=url)


def test_server_that_stops_is_reported_as_unavailable(
    private_chroma: ChromaServer, tmp_path: Path
) -> None:
    server = private_chroma
    index = GuidelineIndex(tmp_path / "index", MODEL, chroma_url=server.url)
    index.add([chunk(0)], [unit(0)])
    server.stop()
    with pytest.raises(IndexUnavailable):
        index.count()
    # Down at start-up: the index opens without it (CareBot serves degraded) and each use
    # says the index is unavailable, until the server answers again.
    later = GuidelineIndex(tmp_path / "index", MODEL, chroma_url=server.url)
    with pytest.raises(IndexUnavailable):
        later.count()


def test_ingest_and_retrieval_through_a_chroma_server(
    private_chroma: ChromaServer, tmp_path: Path
) -> None:
    folder = tmp_path / "guides"
    folder.mkdir()
    (folder / "hiccups.md").write_text(
        "# Hiccups\n\n## What you can do\nSip cold water slowly or hold your breath briefly.\n\n"
        "## See a doctor if\nHiccups last more than two days.\n",
        encoding="utf-8",
    )
    (folder / "nosebleed.txt").write_text("Nosebleeds\n\nPinch the soft part of the nose.\n")
    settings = load_settings(data_dir=tmp_path / "data", chroma_url=private_chroma.url)
    library = GuidelineLibrary.open(settings)
    assert library.index.location == private_chroma.url
    report = library.ingest([folder])
    assert report.count("added") == 2 and report.count("failed") == 0
    assert library.ingest([folder]).count("unchanged") == 2
    hits = library.retriever.search("how do I stop hiccups", k=2).hits
    assert hits and hits[0].chunk.title == "Hiccups"
    assert hits[0].dense_rank is not None and hits[0].lexical_rank is not None
