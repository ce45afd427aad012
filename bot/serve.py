"""`carebot serve`: the web chat and, when configured, the Telegram bot, in one process."""

from __future__ import annotations

from fastapi import FastAPI

from bot.channels.web import create_web_app
from bot.config import Settings
from bot.runtime import Runtime, build_runtime


def create_app(settings: Settings) -> FastAPI:
    """Return the ASGI app that builds the runtime (and Telegram polling) at start-up."""

    async def start() -> Runtime:
        runtime = await build_runtime(settings)
        if settings.telegram_bot_token:
            from bot.channels.telegram import start_telegram

            try:
                await start_telegram(runtime)
            except BaseException:  # refused (another poller) or failed: nothing left running
                await runtime.aclose()
                raise
        return runtime

    return create_web_app(start)


def proxy_options(settings: Settings) -> dict[str, object]:
    """uvicorn's forwarded-header options: believe X-Forwarded-For/-Proto only from the
    configured reverse proxies (uvicorn would otherwise trust 127.0.0.1, so anything on the
    host, or a client whose traffic arrives through a local tunnel, could pick its address)."""
    proxies = settings.trusted_proxy_list
    if not proxies:
        return {"proxy_headers": False, "forwarded_allow_ips": ""}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(proxies)}
