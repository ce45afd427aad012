"""The `openai` backend: any OpenAI-compatible server (vLLM in production)."""

from __future__ import annotations

from langchain_openai import ChatOpenAI
from openai import DefaultAsyncHttpxClient
from pydantic import SecretStr

from bot.llm.base import LLMBackend


class OpenAIBackend(LLMBackend):
    """Chat completions over HTTP with a timeout and bounded retries (LangChain's ChatOpenAI)."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str,
        timeout_s: float = 30.0,
        max_retries: int = 2,
        max_tokens: int = 256,
        temperature: float = 0.2,
    ) -> None:
        # Our own HTTP client, bound to this backend's lifetime (and event loop), rather than
        # langchain-openai's process-wide cached one.
        self._http = DefaultAsyncHttpxClient(timeout=timeout_s)
        chat = ChatOpenAI(
            http_async_client=self._http,
            base_url=base_url,
            model=model,
            api_key=SecretStr(api_key),
            timeout=timeout_s,
            max_retries=max_retries,
            max_completion_tokens=max_tokens,
            temperature=temperature,
        )
        # Retries happen inside the client; the outer deadline covers all of them.
        super().__init__(chat, timeout_s * (max_retries + 1))
        self.chat = chat

    async def aclose(self) -> None:
        await self._http.aclose()
