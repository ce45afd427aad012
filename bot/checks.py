"""`carebot check`: a readable report of what works, for operators setting CareBot up."""

from __future__ import annotations

from collections.abc import Callable

from langchain_core.messages import HumanMessage

from bot.config import Settings
from bot.errors import CareBotError
from bot.runtime import build_runtime
from bot.workers import RETRIEVAL


async def run_checks(settings: Settings, say: Callable[[str], None]) -> bool:
    """Try each component once; print one line each; return True if all passed."""
    try:
        runtime = await build_runtime(settings)
    except CareBotError as exc:
        say(f"FAIL start-up: {exc}")
        return False
    ok = True
    try:
        checks = [
            ("database", runtime.storage.ping()),
            ("session memory", runtime.sessions.ping()),
            (
                f"llm ({runtime.llm.name})",
                runtime.llm.complete([HumanMessage("Reply with the word ready.")]),
            ),
            ("guideline index", RETRIEVAL.run(runtime.engine.answerer.retriever.index.count)),
        ]
        for name, action in checks:
            try:
                await action
                say(f"ok   {name}")
            except CareBotError as exc:
                ok = False
                say(f"FAIL {name}: {exc}")
    finally:
        await runtime.aclose()
    return ok
