"""Build the configured LLM backend from settings."""

from __future__ import annotations

from bot.config import Settings
from bot.llm.base import LLMBackend
from bot.llm.embedded import ChatModelProcess, EmbeddedBackend, packaged_model_path
from bot.llm.openai_compat import OpenAIBackend
from bot.llm.worker.process import ModelProcess
from bot.llm.worker.protocol import Start


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
    process = ModelProcess(
        Start(
            gguf=str(settings.llm_model_path or packaged_model_path()),
            cache_dir=str(settings.llm_cache_dir),
            threads=settings.llm_threads,
            context=settings.llm_context,
            precision=settings.llm_precision,
        )
    )
    timeout_s = settings.llm_timeout_s * 2
    model = ChatModelProcess(
        process=process,
        max_tokens=settings.llm_max_tokens,
        temperature=settings.llm_temperature,
        wait_s=timeout_s,
    )
    return EmbeddedBackend(model, timeout_s=timeout_s, queue_limit=settings.llm_queue_limit)
