"""`carebot serve`: the web chat and, when configured, the Telegram bot; one process, or
several workers (`--workers N`, each built by `worker_app`) sharing the database.
"""

from __future__ import annotations

import os
import shutil

from fastapi import FastAPI

from bot.channels.web import create_web_app
from bot.config import Settings, load_settings
from bot.llm.base import LLMBackend
from bot.metrics import MULTIPROC_ENV
from bot.runtime import Runtime, build_runtime
from bot.startup import prepare_process


def create_app(settings: Settings, llm: LLMBackend | None = None) -> FastAPI:
    """The ASGI app that builds the runtime (and Telegram) at start-up: every entry point
    that serves, and the tests that serve, build it here (`llm`: a test's model)."""

    async def start() -> Runtime:
        runtime = await build_runtime(settings, llm=llm)
        if settings.telegram_bot_token:
            from bot.channels.telegram import start_telegram

            try:
                await start_telegram(runtime)
            except BaseException:  # refused (another poller) or failed: nothing left running
                await runtime.aclose()
                raise
        return runtime

    app = create_web_app(start)
    if settings.telegram_bot_token and settings.telegram_webhook_url:
        from bot.channels.telegram.webhook import add_webhook_route

        add_webhook_route(app, settings)
    return app


def prepare_workers(settings: Settings, overrides: dict[str, object]) -> None:
    """Before uvicorn starts several workers: what the command line changed goes into the
    environment they read their settings from, and /metrics gets a fresh folder where every
    worker writes its values (prometheus-client's multiprocess mode, bot/metrics.py)."""
    for name, value in overrides.items():
        os.environ[f"CAREBOT_{name.upper()}"] = str(value)
    if not os.environ.get(MULTIPROC_ENV):  # an operator's own folder is left as it is
        folder = settings.data_dir / "metrics"
        shutil.rmtree(folder, ignore_errors=True)  # a previous run's workers are gone
        folder.mkdir(parents=True, mode=0o700)
        os.environ[MULTIPROC_ENV] = str(folder)


def worker_app() -> FastAPI:
    """One worker of `carebot serve --workers N`: settings from the environment, as the
    command that started it read them."""
    settings = load_settings()
    prepare_process(settings)
    return create_app(settings)


def proxy_options(settings: Settings) -> dict[str, object]:
    """uvicorn's forwarded-header options: believe X-Forwarded-For/-Proto only from the
    configured reverse proxies (uvicorn would otherwise trust 127.0.0.1, so anything on the
    host, or a client whose traffic arrives through a local tunnel, could pick its address)."""
    proxies = settings.trusted_proxy_list
    if not proxies:
        return {"proxy_headers": False, "forwarded_allow_ips": ""}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(proxies)}
