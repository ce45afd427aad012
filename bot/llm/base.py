"""The LLMBackend contract: complete, stream and structured output, failing as LLMUnavailable."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from pydantic import BaseModel, ValidationError

from bot import metrics
from bot.errors import LLMUnavailable

logger = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


def json_schema_format(schema: type[BaseModel]) -> dict[str, Any]:
    """Return the OpenAI `response_format` that asks for JSON matching `schema`."""
    return {
        "type": "json_schema",
        "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema()},
    }


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return str(content)


class LLMBackend:
    """A LangChain chat model with CareBot's timeouts and error translation around it."""

    name = "llm"

    def __init__(self, model: BaseChatModel, timeout_s: float = 30.0) -> None:
        self.model = model
        self.timeout_s = timeout_s

    def _unavailable(self, exc: BaseException) -> LLMUnavailable:
        # The exception type is enough to diagnose; its text may echo the prompt. Our own
        # LLMUnavailable texts never hold a prompt, and say more (a model process's signal).
        if isinstance(exc, LLMUnavailable):
            logger.warning("%s", exc)
            return exc
        metrics.DEPENDENCY_ERRORS.labels("llm").inc()
        reason = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        logger.warning("%s backend failed: %s", self.name, reason)
        return LLMUnavailable(f"{self.name}: {reason}")

    async def complete(self, messages: Sequence[BaseMessage], **kwargs: Any) -> str:
        """Return the model's whole answer to `messages`."""
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(
                self.model.ainvoke(list(messages), **kwargs), self.timeout_s
            )
        except Exception as exc:  # any failure of the model is the same to the engine
            metrics.LLM_SECONDS.labels("complete", "failed").observe(time.perf_counter() - started)
            raise self._unavailable(exc) from exc
        metrics.LLM_SECONDS.labels("complete", "ok").observe(time.perf_counter() - started)
        usage = getattr(result, "usage_metadata", None) or {}
        metrics.LLM_TOKENS.inc(int(usage.get("output_tokens", 0)))
        return _text(result.content)

    async def stream(self, messages: Sequence[BaseMessage], **kwargs: Any) -> AsyncIterator[str]:
        """Yield the answer in pieces as the model produces them, all within `timeout_s`.

        One deadline for the whole answer, not per piece: a server trickling a token just
        inside every read timeout (a vLLM swapping to disk) is still cut off in time.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.timeout_s
        iterator = self.model.astream(list(messages), **kwargs).__aiter__()
        try:
            while True:
                try:
                    left = max(0.0, deadline - loop.time())
                    chunk = await asyncio.wait_for(iterator.__anext__(), left)
                except StopAsyncIteration:
                    metrics.LLM_SECONDS.labels("stream", "ok").observe(loop.time() - started)
                    return
                except Exception as exc:
                    metrics.LLM_SECONDS.labels("stream", "failed").observe(loop.time() - started)
                    raise self._unavailable(exc) from exc
                piece = _text(chunk.content)
                if piece:
                    metrics.LLM_TOKENS.inc()
                    yield piece
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:  # ends the request (the model stops writing for nobody)
                with contextlib.suppress(Exception):
                    await close()

    async def structured(self, messages: Sequence[BaseMessage], schema: type[M]) -> M:
        """Return the model's answer parsed into `schema` (JSON-schema constrained output)."""
        raw = await self.complete(messages, response_format=json_schema_format(schema))
        try:
            return schema.model_validate_json(raw)
        except (ValidationError, json.JSONDecodeError) as exc:
            raise self._unavailable(exc) from exc

    def status(self) -> str:
        """Where the model stands, in one line, for /healthz (a server is not probed here)."""
        return "not probed"

    async def warm_up(self) -> None:
        """Prepare the model before the first patient waits for it (default: nothing to do)."""

    async def aclose(self) -> None:
        """Release the model's resources, if it holds any."""
