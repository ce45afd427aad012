"""The `carebot` command line: chat, serve, check."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Annotated

import typer

from bot.config import Settings, load_settings
from bot.errors import ConfigError

app = typer.Typer(
    help="CareBot: a self-hostable telemedicine chat assistant. "
    "Configuration comes from CAREBOT_* environment variables and .env (see README).",
    no_args_is_help=True,
    add_completion=False,
)


def _settings() -> Settings:
    try:
        settings = load_settings()
    except ConfigError as exc:
        typer.echo(f"carebot: {exc}", err=True)
        raise typer.Exit(2) from exc
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return settings


@app.command()
def chat(
    consent: Annotated[
        bool, typer.Option("--consent", help="Accept the consent terms up front (scripted use).")
    ] = False,
    chat_id: Annotated[
        str | None, typer.Option("--chat", help="Continue this chat id instead of a new one.")
    ] = None,
) -> None:
    """Chat in the terminal; piped input is read one message per line."""
    from bot.channels.terminal import run_terminal_chat
    from bot.runtime import build_runtime

    settings = _settings()
    if not sys.stdin.isatty():
        # Piped output is for scripts: keep it to the replies.
        logging.getLogger().setLevel(max(logging.WARNING, logging.getLogger().level))

    async def main() -> None:
        runtime = await build_runtime(settings)
        try:
            await run_terminal_chat(
                runtime.engine,
                sys.stdin.buffer,
                sys.stdout,
                consent=consent,
                interactive=sys.stdin.isatty(),
                chat_id=chat_id,
            )
        finally:
            await runtime.aclose()

    asyncio.run(main())


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (CAREBOT_WEB_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (CAREBOT_WEB_PORT).")] = None,
) -> None:
    """Serve the web chat (and the Telegram bot when TELEGRAM_BOT_TOKEN is set)."""
    import uvicorn

    from bot.serve import create_app

    settings = _settings()
    app_ = create_app(settings)
    typer.echo(f"CareBot web chat: http://{host or settings.web_host}:{port or settings.web_port}")
    uvicorn.run(
        app_,
        host=host or settings.web_host,
        port=port or settings.web_port,
        log_level=settings.log_level.lower(),
    )


@app.command()
def check() -> None:
    """Check the configuration, database, session memory and LLM, then exit."""
    from bot.checks import run_checks

    settings = _settings()
    ok = asyncio.run(run_checks(settings, typer.echo))
    raise typer.Exit(0 if ok else 1)


def main() -> None:
    """Entry point of the `carebot` console script."""
    app()


if __name__ == "__main__":
    main()
