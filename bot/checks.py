"""`carebot check`: a readable report of what works, for operators setting CareBot up."""

from __future__ import annotations

from collections.abc import Callable

from langchain_core.messages import HumanMessage

from bot.config import Settings
from bot.errors import CareBotError
from bot.runtime import Runtime, build_runtime
from bot.transport import unencrypted
from bot.workers import RETRIEVAL


async def run_checks(settings: Settings, say: Callable[[str], None]) -> bool:
    """Try each component once; print one line each; return True if all passed."""
    try:
        runtime = await build_runtime(settings)
    except CareBotError as exc:
        say(f"FAIL start-up: {exc}")
        return False
    ok = True
    for line in unencrypted(settings):  # works, but patients' words travel in clear
        say(f"warn unencrypted: {line}")
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
                say(f"ok   {name}" + _detail(runtime, name))
            except CareBotError as exc:
                ok = False
                say(f"FAIL {name}: {exc}")
        ok = await _check_doctors_group(runtime, say) and ok
    finally:
        await runtime.aclose()
    return ok


def _detail(runtime: Runtime, name: str) -> str:
    """The embedded model's own report (precision, CPU kernels, speed), where there is one."""
    if not name.startswith("llm"):
        return ""
    status = runtime.llm.status()
    return "" if status == "not probed" else f": {status}"


async def _check_doctors_group(runtime: Runtime, say: Callable[[str], None]) -> bool:
    """Can the bot reach the doctors' group, and did every open case's alert go out?"""
    settings = runtime.settings
    if settings.doctors_chat_id is None or not settings.telegram_bot_token:
        say("--   doctors' group: not configured (cases reach the dashboard only)")
        return True
    from telegram.error import TelegramError

    from bot.channels.telegram.app import build_application

    bot = build_application(settings).bot
    try:
        async with bot:
            await bot.get_chat(settings.doctors_chat_id)
    except TelegramError as exc:
        say(f"FAIL doctors' group: the bot cannot reach it ({type(exc).__name__}: {exc.message})")
        return False
    status = await runtime.cases.alert_status(True)
    if status != "ok":
        say(f"FAIL doctors' group: {status}")
        return False
    say("ok   doctors' group")
    return True
