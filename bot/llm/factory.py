"""Build the configured LLM backend from settings."""

from __future__ import annotations

from bot.config import Settings
from bot.llm.base import LLMBackend
from bot.llm.embedded import ChatLlamaCpp, EmbeddedBackend, packaged_model_path
from bot.llm.openai_compat import OpenAIBackend


def build_llm(settings: Settings) -> LLMBackend:
    """Return the backend named by CAREBOT_LLM_BACKEND."""
    if settings.llm_backend == "openai":
        return OpenAIBackend(
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            api_key=settings.llm_api_key.get_secret_value(),
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
            max_tokens=settings.llm_max_tokens,
            temperature=settings.llm_temperature,
        )
    model = ChatLlamaCpp(
        model_path=settings.llm_model_path or packaged_model_path(),
        n_ctx=settings.llm_context,
        n_threads=settings.llm_threads,
        max_tokens=settings.llm_max_tokens,
        temperature=settings.llm_temperature,
    )
    return EmbeddedBackend(
        model, timeout_s=settings.llm_timeout_s * 2, queue_limit=settings.llm_queue_limit
    )
