"""One contract for LLM backends: the embedded model (its own process) and a real vLLM server."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Literal

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from bot.config import load_settings
from bot.errors import LLMUnavailable
from bot.llm.base import LLMBackend
from bot.llm.factory import build_llm
from bot.llm.openai_compat import OpenAIBackend
from tests.faults.llm_server import FaultyLLMServer
from tests.servers import free_port, silent_server
from tests.vllm_server import VLLMServer


class Verdict(BaseModel):
    level: Literal["emergency", "urgent", "routine", "self_care"]
    reasons: list[Annotated[str, Field(max_length=60)]] = Field(max_length=2)


@pytest.fixture(scope="session")
def vllm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real vLLM server: CAREBOT_TEST_VLLM_URL if given, else started from infra/vllm-cpu."""
    if os.environ.get("CAREBOT_TEST_VLLM_URL"):
        yield os.environ["CAREBOT_TEST_VLLM_URL"]
        return
    try:
        server = VLLMServer(tmp_path_factory.mktemp("vllm") / "vllm.log")
    except RuntimeError as exc:
        if os.environ.get("CAREBOT_TEST_REQUIRE_VLLM") == "1":
            pytest.fail(f"the vLLM server is required (CAREBOT_TEST_REQUIRE_VLLM=1): {exc}")
        pytest.skip(f"vLLM server unavailable: {exc}")
    yield server.base_url
    server.stop()


@pytest.fixture(params=["embedded", "openai-vllm"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[LLMBackend]:
    if request.param == "embedded":
        llm = build_llm(load_settings())
    else:
        llm = OpenAIBackend(
            request.getfixturevalue("vllm_url"),
            "smollm2",
            "not-needed",
            timeout_s=60,
            max_retries=1,
            max_tokens=200,
        )
    yield llm
    await llm.aclose()


QUESTION = [SystemMessage("Answer briefly."), HumanMessage("Name one fruit.")]


class TestLLMBackendContract:
    async def test_complete_returns_text(self, backend: LLMBackend) -> None:
        text = await backend.complete(QUESTION)
        assert isinstance(text, str) and text.strip()

    async def test_stream_yields_pieces_in_order(self, backend: LLMBackend) -> None:
        pieces = [p async for p in backend.stream(QUESTION)]
        assert len(pieces) > 1
        assert "".join(pieces).strip()

    async def test_structured_output_matches_the_schema(self, backend: LLMBackend) -> None:
        verdict = await backend.structured(
            [SystemMessage("Classify how urgent this is."), HumanMessage("I have a mild cold.")],
            Verdict,
        )
        assert verdict.level in ("emergency", "urgent", "routine", "self_care")
        assert len(verdict.reasons) <= 2

    async def test_triage_classifier_gets_a_schema_valid_verdict(self, backend: LLMBackend) -> None:
        # The real prompt through the real server: JSON-schema output parses (repair allowed).
        from bot.config import REPO_ROOT
        from bot.prompts import PromptLibrary
        from bot.triage.classifier import TriageClassifier

        classifier = TriageClassifier(backend, PromptLibrary(REPO_ROOT / "prompts"))
        outcome = await classifier.classify(["I have had a runny nose for two days"], [])
        assert outcome.result is not None, outcome.error
        assert len(outcome.result.reasons) <= 4


@pytest.fixture(params=["refused", "silent"])
def broken_openai(request: pytest.FixtureRequest) -> Iterator[LLMBackend]:
    if request.param == "refused":
        yield OpenAIBackend(
            f"http://127.0.0.1:{free_port()}/v1", "m", "k", timeout_s=1, max_retries=1
        )
        return
    with silent_server() as port:
        yield OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", "k", timeout_s=0.3, max_retries=1)


async def test_unreachable_server_is_llm_unavailable(broken_openai: LLMBackend) -> None:
    with pytest.raises(LLMUnavailable):
        await broken_openai.complete(QUESTION)
    with pytest.raises(LLMUnavailable):
        [p async for p in broken_openai.stream(QUESTION)]
    with pytest.raises(LLMUnavailable):
        await broken_openai.structured(QUESTION, Verdict)


async def test_broken_model_file_is_llm_unavailable(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file" * 100)
    llm = build_llm(load_settings(llm_model_path=bad))
    try:
        with pytest.raises(LLMUnavailable):
            await llm.warm_up()
        started = time.monotonic()
        with pytest.raises(LLMUnavailable, match="unavailable"):
            await llm.complete(QUESTION)
        assert time.monotonic() - started < 1.0  # not restarted in a loop: refused at once
    finally:
        await llm.aclose()


async def test_a_trickling_server_is_cut_off_at_the_answers_deadline() -> None:
    # A token every 0.3 s: each read is well inside the 1 s timeout, the answer never ends.
    server = FaultyLLMServer(mode="trickle", interval_s=0.3)
    backend = OpenAIBackend(server.base_url, "m", "k", timeout_s=1.0, max_retries=0)
    started = time.monotonic()
    pieces: list[str] = []
    try:
        with pytest.raises(LLMUnavailable):
            async for piece in backend.stream(QUESTION):
                pieces.append(piece)
    finally:
        await backend.aclose()
        server.stop()
    assert pieces, "the server did start answering"
    assert time.monotonic() - started < 2.0
