"""Hybrid retrieval, groundedness and the LCEL answer chain over the bundled guideline pack."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import REPO_ROOT, load_settings
from bot.memory.base import Turn
from bot.prompts import PromptLibrary
from rag.answer import GuidelineAnswerer, standalone_question
from rag.embeddings import MiniLMEmbeddings
from rag.grounding import is_grounded
from rag.lexical import tokenize
from rag.library import BUNDLED, GuidelineLibrary
from rag.loaders import load_file
from rag.retrieval import Retriever
from tests.fakes import scripted

PROMPTS = PromptLibrary(REPO_ROOT / "prompts")


@pytest.fixture(scope="module")
def retriever(guideline_index_dir: Path) -> Retriever:
    settings = load_settings(data_dir=guideline_index_dir)
    return GuidelineLibrary.open(settings, index_dir=guideline_index_dir).retriever


def answerer(retriever: Retriever, llm: object = None, **options: object) -> GuidelineAnswerer:
    return GuidelineAnswerer(retriever, llm or scripted(), PROMPTS, **options)  # type: ignore[arg-type]


def test_bundled_pack_covers_forty_topics_with_the_required_sections() -> None:
    pages = [load_file(p) for p in sorted(BUNDLED.glob("*.md"))]
    english = [p for p in pages if p.language == "en"]
    assert len(english) >= 40
    for page in pages:
        assert page.urls and all(u.startswith("https://") for u in page.urls), page.path
        assert page.date, f"{page.path} has no reviewed date"
    for page in english:
        headings = {s.heading for s in page.sections}
        assert {"What you can do", "See a doctor if", "Call emergency services if"} <= headings, (
            page.path
        )


@pytest.mark.parametrize(
    ("question", "title"),
    [
        ("I have had a mild fever since yesterday, what can I do?", "Fever in adults"),
        ("my toddler has a temperature of 39", "Fever in children"),
        ("sore throat for three days", "Sore throat"),
        ("I spilled boiling water on my arm, a scald", "Burns and scalds"),
        ("I keep throwing up and have diarrhoea", "Diarrhoea and vomiting"),
        ("it burns when I pee and I need to go all the time", "Urinary tract infection (UTI)"),
        ("I twisted my ankle playing football and it is swollen", "Sprains and strains"),
        ("我发烧了怎么办", "成人发烧"),
    ],
)
async def test_retrieval_finds_the_right_page(
    retriever: Retriever, question: str, title: str
) -> None:
    answer = await answerer(retriever, mmr=False).answer(question, [], "en")
    assert title in {h.chunk.title for h in answer.hits}


@pytest.mark.parametrize(
    "question", ["hello", "what is the capital of France?", "how do I fix my car gearbox", "🙂🙂"]
)
def test_nothing_relevant_is_reported_as_not_found(retriever: Retriever, question: str) -> None:
    result = retriever.search(question)
    assert not result.relevant and result.hits == []


@pytest.fixture(scope="module")
def other_precision(retriever: Retriever) -> Retriever:
    """The same index searched with MiniLM at the other precision (bf16 <-> fp32)."""
    current = retriever.embedder
    assert isinstance(current, MiniLMEmbeddings)
    embedder = MiniLMEmbeddings(precision="fp32" if current.bf16 else "bf16")
    return Retriever(retriever.index, embedder, retriever.options)


@pytest.mark.parametrize(
    "question",
    [
        "hello",
        "🙂🙂",
        "how do I fix my car gearbox",
        "I have had a mild fever since yesterday, what can I do?",
        "it burns when I pee and I need to go all the time",
        "我发烧了怎么办",
    ],
)
def test_float32_and_bfloat16_find_the_same_and_decide_alike(
    retriever: Retriever, other_precision: Retriever, question: str
) -> None:
    # "No guideline" must not hinge on a CPU's arithmetic (a CPU without bfloat16 runs fp32).
    mine, theirs = retriever.search(question), other_precision.search(question)
    assert mine.relevant == theirs.relevant
    assert [h.chunk.title for h in mine.hits[:2]] == [h.chunk.title for h in theirs.hits[:2]]


def test_hybrid_hits_carry_both_scores_and_filters_apply(retriever: Retriever) -> None:
    result = retriever.search("sore throat what can I do", k=5)
    top = result.hits[0]
    assert top.dense_rank is not None and top.lexical_rank is not None
    assert 0 < top.similarity <= 1 and result.elapsed_ms > 0
    chinese = retriever.search("发烧", k=5, language="zh")
    assert chinese.hits and all(h.chunk.language == "zh" for h in chinese.hits)
    assert retriever.search("sore throat", k=5, sources=["nobody"]).hits == []


def test_mmr_returns_distinct_passages(retriever: Retriever) -> None:
    plain = retriever.search("fever what can I do", k=4)
    diverse = retriever.search("fever what can I do", k=4, mmr=True)
    assert diverse.hits[0].chunk.id == plain.hits[0].chunk.id
    assert len({h.chunk.id for h in diverse.hits}) == len(diverse.hits) == 4


async def test_chinese_question_against_english_only_passages_finds_nothing(
    retriever: Retriever,
) -> None:
    answer = await answerer(retriever).answer("我扭伤了脚踝怎么办", [], "zh")
    assert all(h.chunk.language == "zh" for h in answer.hits)
    assert not answer.found or answer.hits[0].chunk.title == "成人发烧"


def test_tokenizer_handles_english_and_chinese() -> None:
    assert tokenize("Fevers and coughing") == ["fever", "cough"]
    assert tokenize("发烧了") == ["发烧", "烧了"]


def test_grounding_accepts_supported_and_rejects_invented_answers() -> None:
    passage = (
        "Rest, and drink plenty of fluids. Paracetamol or ibuprofen can bring the temperature down."
    )
    assert is_grounded("Rest and drink plenty of fluids [1].", [passage])
    assert not is_grounded("Take 4000 mg of paracetamol every hour [1].", [passage])
    assert not is_grounded("You should buy a new car and travel to Paris.", [passage])
    assert not is_grounded("", [passage])


def test_standalone_question_joins_short_follow_ups() -> None:
    history = [Turn(role="patient", text="I have a sore throat"), Turn(role="bot", text="...")]
    assert standalone_question("for how long?", history) == "I have a sore throat for how long?"
    assert standalone_question("how long does it usually last", history).startswith("I have")
    long_q = "what should I do about a fever that keeps coming back"
    assert standalone_question(long_q, history) == long_q


async def test_grounded_answer_is_kept_with_citations(retriever: Retriever) -> None:
    llm = scripted("Get urgent help today if your fever has lasted more than three days [1].")
    answer = await answerer(retriever, llm).answer(
        "mild fever since yesterday, what can I do?", [], "en"
    )
    assert answer.grounded and not answer.extractive
    assert answer.text.startswith(
        "Get urgent help today if your fever has lasted more than three days [1]"
    )
    assert [c.number for c in answer.citations] == [1]
    assert answer.citations[0].title == "Fever in adults"


async def test_prompt_contains_the_passages_and_question(retriever: Retriever) -> None:
    llm = scripted("Rest [1].")
    await answerer(retriever, llm).answer("sore throat remedies", [], "en")
    prompt = "\n".join(str(m.content) for m in llm.model.prompts[-1])  # type: ignore[attr-defined]
    assert "sore throat remedies" in prompt and "[1] Sore throat" in prompt


async def test_ungrounded_answer_is_replaced_by_cited_passages(retriever: Retriever) -> None:
    llm = scripted("Take 5000 mg of amoxicillin twice a day for two weeks.")
    answer = await answerer(retriever, llm).answer("sore throat remedies", [], "en")
    assert answer.extractive and "amoxicillin" not in answer.text
    assert "Sore throat" in answer.text and "[1]" in answer.text
    assert answer.citations and answer.llm_error is None


async def test_llm_failure_quotes_the_guidelines_and_says_so(retriever: Retriever) -> None:
    llm = scripted(fail_with="connection refused")
    answer = await answerer(retriever, llm).answer("sore throat remedies", [], "en")
    assert answer.extractive and answer.llm_error
    assert "unavailable" in answer.text and "Sore throat" in answer.text


async def test_streamed_pieces_reach_the_callback(retriever: Retriever) -> None:
    pieces: list[str] = []

    async def on_delta(piece: str) -> None:
        pieces.append(piece)

    llm = scripted("Gargle with warm salty water [1].")
    await answerer(retriever, llm).answer("sore throat help", [], "en", on_delta)
    assert len(pieces) > 1 and "".join(pieces).strip() == "Gargle with warm salty water [1]."
