"""Retrieval, groundedness and the answer chain over the bundled guideline pages."""

from __future__ import annotations

import pytest

from bot.config import REPO_ROOT
from bot.memory.base import Turn
from bot.prompts import PromptLibrary
from rag.answer import GuidelineAnswerer, standalone_question
from rag.grounding import is_grounded
from rag.lexical import BM25Index, tokenize
from rag.pages import load_folder
from tests.fakes import scripted

PASSAGES = load_folder()
INDEX = BM25Index(PASSAGES)
PROMPTS = PromptLibrary(REPO_ROOT / "prompts")


def test_bundled_pages_have_the_required_sections() -> None:
    pages: dict[str, set[str]] = {}
    for p in PASSAGES:
        pages.setdefault(p.path, set()).add(p.section)
        assert p.urls, f"{p.path} lists no public sources"
    english = {path: s for path, s in pages.items() if "zh" not in path}
    assert len(english) >= 8
    for path, sections in english.items():
        assert {"What you can do", "See a doctor if", "Call emergency services if"} <= sections, (
            path
        )


@pytest.mark.parametrize(
    ("question", "title"),
    [
        ("I have had a mild fever since yesterday, what can I do?", "Fever in adults"),
        ("my toddler has a temperature of 39", "Fever in children"),
        ("sore throat for three days", "Sore throat"),
        ("I spilled boiling water on my arm, a scald", "Burns and scalds"),
        ("I keep throwing up and have diarrhoea", "Diarrhoea and vomiting"),
        ("我发烧了怎么办", "成人发烧"),
    ],
)
def test_retrieval_finds_the_right_page(question: str, title: str) -> None:
    answerer = GuidelineAnswerer(INDEX, scripted(), PROMPTS)
    language = "zh" if any("\u4e00" <= c <= "\u9fff" for c in question) else "en"
    hits = answerer.retrieve(question, language)
    assert title in {h.passage.title for h in hits}


@pytest.mark.parametrize("question", ["hello", "what is the capital of France?", "🙂🙂", ""])
def test_nothing_relevant_is_reported_as_not_found(question: str) -> None:
    assert GuidelineAnswerer(INDEX, scripted(), PROMPTS).retrieve(question, "en") == []


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
    long_q = "what should I do about a fever that keeps coming back"
    assert standalone_question(long_q, history) == long_q


async def test_grounded_answer_is_kept_with_citations() -> None:
    llm = scripted("See a doctor if the fever lasts more than three days [1].")
    answer = await GuidelineAnswerer(INDEX, llm, PROMPTS).answer(
        "mild fever since yesterday, what can I do?", [], "en"
    )
    assert answer.grounded and not answer.extractive
    assert answer.text.startswith("See a doctor if the fever lasts more than three days [1]")
    assert [c.number for c in answer.citations] == [1]
    assert answer.citations[0].title == "Fever in adults"


async def test_prompt_contains_the_passages_and_question() -> None:
    llm = scripted("Rest [1].")
    await GuidelineAnswerer(INDEX, llm, PROMPTS).answer("sore throat remedies", [], "en")
    prompt = "\n".join(str(m.content) for m in llm.model.prompts[-1])  # type: ignore[attr-defined]
    assert "sore throat remedies" in prompt and "[1] Sore throat" in prompt


async def test_ungrounded_answer_is_replaced_by_cited_passages() -> None:
    llm = scripted("Take 5000 mg of amoxicillin twice a day for two weeks.")
    answer = await GuidelineAnswerer(INDEX, llm, PROMPTS).answer("sore throat remedies", [], "en")
    assert answer.extractive and "amoxicillin" not in answer.text
    assert "Sore throat" in answer.text and "[1]" in answer.text
    assert answer.citations and answer.llm_error is None


async def test_llm_failure_quotes_the_guidelines_and_says_so() -> None:
    llm = scripted(fail_with="connection refused")
    answer = await GuidelineAnswerer(INDEX, llm, PROMPTS).answer("sore throat remedies", [], "en")
    assert answer.extractive and answer.llm_error
    assert "unavailable" in answer.text and "Sore throat" in answer.text


async def test_streamed_pieces_reach_the_callback() -> None:
    pieces: list[str] = []

    async def on_delta(piece: str) -> None:
        pieces.append(piece)

    llm = scripted("Gargle with warm salty water [1].")
    await GuidelineAnswerer(INDEX, llm, PROMPTS).answer("sore throat help", [], "en", on_delta)
    assert len(pieces) > 1 and "".join(pieces).strip() == "Gargle with warm salty water [1]."
