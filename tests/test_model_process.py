"""The embedded model in its own process: a native crash costs one answer, never the service.

Issue 22: on an Intel CPU with AMX the natively compiled llama.cpp died with a segmentation
fault and took `carebot serve` with it. These tests kill the real model process (PyTorch,
the packaged SmolLM2) with the same signal a native crash raises, at the worst moments.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from bot.config import load_settings
from bot.errors import LLMUnavailable
from bot.llm.embedded import ChatModelProcess, EmbeddedBackend, packaged_model_path
from bot.llm.factory import build_llm
from bot.llm.worker.process import ModelProcess, ModelState, Restarts
from bot.llm.worker.protocol import ChatTurn, Start
from bot.models import TriageLevel
from tests.conftest import RuntimeFactory
from tests.fakes import patient_message

pytestmark = pytest.mark.embedded_llm
QUESTION = "how long does a cold usually last?"
NEXT_QUESTION = "what helps a sore throat?"
EMERGENCY = "my father collapsed and is not breathing"
QUOTING = "My writing assistant is unavailable right now"


async def until(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    # Polling: these are a child process's comings and goings, seen from outside.
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def embedded(**overrides: object) -> EmbeddedBackend:
    llm = build_llm(load_settings(**overrides))
    assert isinstance(llm, EmbeddedBackend)
    return llm


async def test_a_sigsegv_mid_answer_costs_that_answer_only(make_runtime: RuntimeFactory) -> None:
    llm = embedded(llm_max_tokens=200, llm_temperature=0.0)
    rt = await make_runtime(llm)
    assert llm.process.state is ModelState.READY
    crashed = llm.process.pid
    assert crashed is not None
    before = llm.process.tokens_out
    answer = asyncio.create_task(rt.engine.handle(patient_message(QUESTION, "cold")))
    await until(lambda: llm.process.tokens_out > before)  # the model is writing the answer
    os.kill(crashed, signal.SIGSEGV)

    # An emergency sent at the same moment: answered by the rules, at once.
    started = time.perf_counter()
    emergency = await rt.engine.handle(patient_message(EMERGENCY, "collapsed"))
    assert time.perf_counter() - started < 1.0
    assert emergency.level is TriageLevel.EMERGENCY and "112" in emergency.text

    # The patient whose answer died with the model gets the guidelines quoted, cited.
    reply = await asyncio.wait_for(answer, 60)
    assert reply.kind == "answer" and reply.citations
    assert QUOTING in reply.text and "[1]" in reply.text
    # "killed by SIGSEGV", or "exited with status 255" when a library's own crash handler
    # ends the process: either way the model process, not CareBot, went down.
    assert reply.llm_error and "the model process" in reply.llm_error

    # The model comes back by itself, and the next question is written by it.
    await until(lambda: llm.process.state is ModelState.READY, 120)
    assert llm.process.pid not in (None, crashed) and llm.process.crashes == 1
    following = await rt.engine.handle(patient_message(NEXT_QUESTION, "throat"))
    assert following.kind == "answer" and following.llm_error is None
    assert QUOTING not in following.text


async def test_an_answer_waiting_while_the_model_restarts_is_written_by_the_new_one() -> None:
    llm = embedded(llm_max_tokens=8)
    try:
        await llm.warm_up()
        crashed = llm.process.pid
        assert crashed is not None
        os.kill(crashed, signal.SIGSEGV)
        await until(lambda: llm.process.state is not ModelState.READY)
        # Asked while the process is down: it waits for the restart rather than failing.
        text = await llm.complete([HumanMessage("Say hello.")])
        assert text.strip() and llm.process.pid != crashed
        assert llm.status().startswith("ready (") and "1 crash so far" in llm.status()
    finally:
        await llm.aclose()


async def test_a_model_that_dies_at_every_start_leaves_carebot_degraded_and_says_why(
    tmp_path: Path,
) -> None:
    process = ModelProcess(
        Start(gguf=str(packaged_model_path()), cache_dir=str(tmp_path), threads=1, context=512),
        Restarts(first_delay_s=0.05, give_up_after=2),
    )
    killed: set[int] = set()
    kernels: list[bytes] = []

    async def kill_each_child() -> None:
        # Each new child is killed before it can finish loading: a CPU it cannot run on.
        while process.state is not ModelState.BROKEN:
            pid = process.pid
            if pid is not None and pid not in killed:
                killed.add(pid)
                environ = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
                kernels.extend(e for e in environ if e.startswith(b"ATEN_CPU_CAPABILITY="))
                os.kill(pid, signal.SIGSEGV)
            await asyncio.sleep(0.01)

    process.ensure_started()
    killer = asyncio.create_task(kill_each_child())
    try:
        with pytest.raises(LLMUnavailable) as raised:
            await process.wait_ready(120)
        await asyncio.wait_for(killer, 10)
        assert len(killed) == 2  # tried again once, then gave up
        assert kernels == [b"ATEN_CPU_CAPABILITY=avx2"]  # the second with safer kernels
        # (How a child killed that early is reported, a signal or a status, is the OS's.)
        assert "at start 2 times in a row" in str(raised.value)
        assert process.describe().startswith("unavailable:")
        # From now on every answer fails at once (quoted guidelines), with no waiting.
        started = time.perf_counter()
        with pytest.raises(LLMUnavailable):
            await process.wait_ready(30)
        assert time.perf_counter() - started < 0.5
    finally:
        killer.cancel()
        await process.aclose()


async def test_a_model_that_dies_at_start_comes_back_on_safer_cpu_kernels() -> None:
    settings = load_settings()
    process = ModelProcess(
        Start(
            gguf=str(packaged_model_path()),
            cache_dir=str(settings.llm_cache_dir),
            threads=1,
            context=512,
        ),
        Restarts(first_delay_s=0.05),
    )
    process.ensure_started()
    try:
        await until(lambda: process.pid is not None)
        first = process.pid
        assert first is not None
        os.kill(first, signal.SIGSEGV)  # as if its kernels were wrong for this CPU
        ready = await process.wait_ready(120)
        # PyTorch's AVX2 kernels (or baseline ones on a CPU without AVX2), never AVX-512.
        assert ready.cpu_capability in ("AVX2", "DEFAULT") and ready.tokens_per_s > 0
        assert "kernels stepped down after crashes" in process.describe()
        pieces = process.generate(
            [ChatTurn(role="user", content="Say hello.")],
            max_tokens=4,
            temperature=0.0,
            json_schema=None,
            wait_s=10,
        )
        assert "".join([p async for p in pieces]).strip()
    finally:
        await process.aclose()


async def test_a_reader_that_goes_away_stops_the_model_writing() -> None:
    llm = embedded(llm_max_tokens=2000, llm_context=4096, llm_temperature=1.0)
    try:
        await llm.warm_up()
        before = llm.process.tokens_out
        stream = llm.stream([HumanMessage("Write a long story about a lighthouse keeper.")])
        async for _ in stream:
            break
        await stream.aclose()  # the patient's reply was given up (a deadline, a closed tab)
        await asyncio.sleep(1.0)
        written = llm.process.tokens_out
        await asyncio.sleep(1.0)
        # Cancelled between two tokens: no more pieces come, and the next answer is prompt.
        assert llm.process.tokens_out == written and written - before < 100
        started = time.perf_counter()
        assert (await llm.complete([HumanMessage("Say hello.")], max_tokens=4)).strip()
        assert time.perf_counter() - started < 10
    finally:
        await llm.aclose()


async def test_a_model_process_hung_mid_answer_is_killed_and_started_again() -> None:
    llm = embedded(llm_timeout_s=1.5, llm_max_tokens=2000, llm_context=4096)  # 3 s an answer
    try:
        await llm.warm_up()
        llm.process.restarts = Restarts(first_delay_s=0.05, stop_within_s=1.0)
        hung = llm.process.pid
        assert hung is not None
        stream = llm.stream([HumanMessage("Write a long story about a lighthouse keeper.")])
        with pytest.raises(LLMUnavailable):
            async for _ in stream:
                os.kill(hung, signal.SIGSTOP)  # stuck in native code: never answers again
        # Its answer ran out of time; the child did not stop it, so it is killed and replaced.
        await until(lambda: llm.process.pid not in (None, hung), 30)
        await until(lambda: llm.process.state is ModelState.READY, 60)
        assert (await llm.complete([HumanMessage("Say hello.")], max_tokens=4)).strip()
        assert llm.process.crashes == 1
    finally:
        await llm.aclose()


async def test_a_prompt_longer_than_the_context_fails_that_answer_only() -> None:
    llm = embedded(llm_context=512)
    try:
        await llm.warm_up()
        pid = llm.process.pid
        with pytest.raises(LLMUnavailable, match="PromptTooLong"):
            await llm.complete([HumanMessage("fever " * 2000)])
        assert (await llm.complete([HumanMessage("Say hello.")], max_tokens=4)).strip()
        assert llm.process.pid == pid and llm.process.crashes == 0
    finally:
        await llm.aclose()


async def test_the_model_process_never_sees_the_internet_nor_prints_prompts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    words = "PATIENT-SENTINEL-4711 my rash is spreading"
    llm = embedded(llm_max_tokens=4)
    try:
        await llm.warm_up()
        with caplog.at_level("DEBUG"):
            await llm.complete([HumanMessage(words)])
            with pytest.raises(LLMUnavailable):
                await llm.complete([HumanMessage(words * 400)])  # fails: too long
        assert "PATIENT-SENTINEL" not in caplog.text
        env = (Path("/proc") / str(llm.process.pid) / "environ").read_bytes()
        assert b"HF_HUB_OFFLINE=1" in env
    finally:
        await llm.aclose()


def test_a_converted_model_changed_in_the_cache_is_not_trusted(tmp_path: Path) -> None:
    from bot.llm.worker.model import _intact, converted_folder
    from bot.model_checksums import file_sha256

    gguf = packaged_model_path()
    folder = converted_folder(gguf, load_settings().llm_cache_dir)  # converted by now
    digest = file_sha256(gguf)
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    assert _intact(copy, digest)
    with (copy / "model.safetensors").open("r+b") as weights:
        weights.seek(4096)
        weights.write(b"\x7f")  # one byte of one weight
    assert not _intact(copy, digest)
    assert not _intact(folder, "0" * 64)  # converted from another file


class _SilentProcess(ModelProcess):
    """A model process whose model stops at once (its first token is the end of the answer)."""

    async def generate(self, *args: object, **kwargs: object) -> AsyncGenerator[str, None]:
        return
        yield  # an async generator that yields nothing


async def test_an_answer_the_model_ends_at_once_is_empty_not_a_failure() -> None:
    process = _SilentProcess(Start(gguf="unused", cache_dir="unused", threads=1, context=512))
    llm = EmbeddedBackend(ChatModelProcess(process=process))
    # Empty: the groundedness check then quotes the passages, with no "unavailable" notice.
    assert [p async for p in llm.stream([HumanMessage("hi")])] == []
    assert await llm.complete([HumanMessage("hi")]) == ""


async def test_an_unwritable_model_cache_still_starts_the_model(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be")
    process = ModelProcess(
        Start(gguf=str(packaged_model_path()), cache_dir=str(not_a_folder), threads=2, context=512)
    )
    try:
        ready = await process.wait_ready(240)  # converted in memory (about 25 s), not cached
        assert ready.tokens_per_s > 0 and process.state is ModelState.READY
        assert not_a_folder.read_text().startswith("a file")
    finally:
        await process.aclose()


async def test_the_childs_output_is_read_whatever_it_writes() -> None:
    from bot.llm.worker.process import _read
    from bot.llm.worker.protocol import Done

    stream = asyncio.StreamReader(limit=64)
    stream.feed_data(b"\x00\xff not the protocol\n" + b'{"type":"done","id":3,"tokens":1}\n')
    assert await _read(stream) == Done(id=3, tokens=1)  # the stray line skipped
    stream.feed_data(b"x" * 200 + b"\n")  # past any bound: the child is not trusted further
    assert await _read(stream) is None
    stream.feed_eof()


async def test_chinese_and_binary_prompts_get_whole_characters_or_a_clean_failure() -> None:
    llm = embedded(llm_max_tokens=24)
    try:
        await llm.warm_up()
        question = [HumanMessage("发烧了怎么办？请用中文回答。")]
        # Every budget from 1 to 12 tokens: some end inside a character (2-3 tokens each).
        for budget in range(1, 13):
            answer = "".join([p async for p in llm.stream(question, max_tokens=budget)])
            assert "\ufffd" not in answer, budget  # half a character is never shown
        for odd in ("\x00\x01\x02 \u202e", "\ud800 lone surrogate", ""):
            # Answered, or refused as an answer failure (the passages would be quoted).
            with contextlib.suppress(LLMUnavailable):
                await llm.complete([HumanMessage(odd)])
        assert llm.process.crashes == 0 and llm.process.state is ModelState.READY
        assert (await llm.complete([HumanMessage("Say hello.")], max_tokens=4)).strip()
    finally:
        await llm.aclose()
