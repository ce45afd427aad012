"""Engine overhead per message: everything but the LLM call, with an instant scripted LLM.

Each message goes through the whole engine: store (SQLite on disk), session memory, red-flag
rules, consent, retrieval, the answer chain (with an LLM that answers instantly), the
groundedness check, and storing the reply. Run: python -m bench.engine_overhead [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from bench.common import machine, summary, table
from bot.config import load_settings
from bot.llm.base import LLMBackend
from bot.models import IncomingMessage
from bot.runtime import build_runtime
from bot.triage.rules import TriageRules

MESSAGES = [
    "I have had a mild fever since yesterday, what can I do?",
    "my sore throat is getting worse, should I see someone?",
    "I burnt my hand on the oven, what should I do",
    "my toddler has been vomiting and has diarrhoea",
    "crushing chest pain and sweating for 20 minutes",
    "what is the capital of France?",
    "我发烧了怎么办",
    "I keep getting headaches in the afternoon",
]
ANSWER = "See a doctor if the fever lasts more than three days [1]."


class InstantChatModel(BaseChatModel):
    """A natively async chat model that streams a fixed answer at once (no thread hops)."""

    @property
    def _llm_type(self) -> str:
        return "instant"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(ANSWER))])

    async def _astream(  # type: ignore[override]
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for word in ANSWER.split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))


def instant_llm() -> LLMBackend:
    """An LLM that answers at once, so that only CareBot's own work is timed."""
    return LLMBackend(InstantChatModel())


async def run(n: int, chats: int, redis_url: str | None) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp), redis_url=redis_url)
        runtime = await build_runtime(settings, llm=instant_llm())
        for warm in range(chats):  # first contact per chat: patient row, consent
            await runtime.engine.handle(
                IncomingMessage(
                    channel="bench",
                    chat_id=f"c{warm}",
                    user_id=f"u{warm}",
                    message_id=uuid.uuid4().hex,
                    text="yes",
                )
            )
        timings = []
        for i in range(n):
            text = MESSAGES[i % len(MESSAGES)]
            msg = IncomingMessage(
                channel="bench",
                chat_id=f"c{i % chats}",
                user_id=f"u{i % chats}",
                message_id=uuid.uuid4().hex,
                text=text,
            )
            start = time.perf_counter()
            await runtime.engine.handle(msg)
            timings.append((time.perf_counter() - start) * 1000)
        await runtime.aclose()
    return summary(timings)


def rules_us(n: int = 5000) -> float:
    """Return the mean red-flag check time per message, in microseconds."""
    rules = TriageRules()
    start = time.perf_counter()
    for i in range(n):
        rules.check([MESSAGES[i % len(MESSAGES)]])
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=400, help="messages to time (default 400)")
    parser.add_argument("--chats", type=int, default=20, help="distinct chats (default 20)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    results = {"embedded memory": asyncio.run(run(args.n, args.chats, None))}
    server = shutil.which("redis-server")
    if server:
        from tests.servers import RedisServer

        with tempfile.TemporaryDirectory() as tmp:
            redis = RedisServer(Path(tmp))
            try:
                results["redis-server"] = asyncio.run(run(args.n, args.chats, redis.url))
            finally:
                redis.stop()
    rules = rules_us()
    if args.json:
        print(json.dumps({"machine": machine(), "engine_ms": results, "rules_us": rules}))
        return
    print(f"Engine overhead per message (instant LLM, SQLite on disk), {machine()}")
    rows = [
        [name, str(r["n"]), *(f"{r[k]:.2f}" for k in ("mean", "p50", "p95", "p99", "max"))]
        for name, r in results.items()
    ]
    print(
        table(
            ["session memory", "messages", "mean ms", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows
        )
    )
    print(f"\nRed-flag rules: {rules:.1f} µs per message (mean of 5000)")


if __name__ == "__main__":
    main()
