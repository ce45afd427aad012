"""`carebot prompts list|show|diff|publish|rollback`: prompt versions from a terminal.

A running CareBot picks a published version up within CAREBOT_PROMPT_RELOAD_S seconds.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from bot.prompt_store import PromptStore, PublishRefused, diff

prompts_app = typer.Typer(help="Versioned prompt templates.", no_args_is_help=True)
_By = Annotated[str, typer.Option("--by", help="Who makes the change, for the audit log.")]
_Note = Annotated[str, typer.Option("--note", help="Why: shown in the history.")]


def _store() -> PromptStore:
    from bot.cli import _settings
    from bot.prompts import PromptLibrary
    from bot.storage.migrate import upgrade
    from bot.storage.repository import Storage, make_engine

    settings = _settings()
    db = make_engine(settings.sqlalchemy_url)
    upgrade(db)
    store = PromptStore(Storage(db), PromptLibrary(settings.prompts_dir))
    asyncio.run(store.seed())
    return store


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"carebot: {message}", err=True)
    return typer.Exit(code)


@prompts_app.command("list")
def list_prompts() -> None:
    """Every prompt with its active version and last change."""
    active = asyncio.run(_store().active())
    for name, v in sorted(active.items()):
        when = v.created_at.strftime("%Y-%m-%d %H:%M")
        typer.echo(f"{name:<16} v{v.version:<4} {when}  {v.author}: {v.note}")


@prompts_app.command("show")
def show(
    name: str,
    version: Annotated[
        int | None, typer.Option("--version", help="Default: the active one.")
    ] = None,
    history: Annotated[bool, typer.Option("--history", help="List every version instead.")] = False,
) -> None:
    """Print a prompt's source (or its history)."""
    store = _store()
    versions = asyncio.run(store.history(name))
    if not versions:
        raise _fail(f"there is no prompt named {name!r}")
    if history:
        for v in versions:
            mark = "*" if v.active else " "
            typer.echo(
                f"{mark} v{v.version:<4} {v.created_at:%Y-%m-%d %H:%M}  {v.author}: {v.note}"
            )
        return
    chosen = next((v for v in versions if (v.version == version if version else v.active)), None)
    if chosen is None:
        raise _fail(f"{name} has no version {version}")
    typer.echo(chosen.source, nl=False)


@prompts_app.command("diff")
def show_diff(
    name: str,
    old: Annotated[int, typer.Argument(help="The older version.")],
    new: Annotated[str, typer.Argument(help="A newer version number, or a file.")] = "",
) -> None:
    """Diff two versions, or a version and a draft file (default: the active version)."""
    store = _store()
    versions = {v.version: v for v in asyncio.run(store.history(name))}
    if old not in versions:
        raise _fail(f"{name} has no version {old}")
    if new.isdigit():
        if int(new) not in versions:
            raise _fail(f"{name} has no version {new}")
        text, label = versions[int(new)].source, f"v{new}"
    elif new:
        text, label = Path(new).read_text(encoding="utf-8"), new
    else:
        active = next(v for v in versions.values() if v.active)
        text, label = active.source, f"v{active.version} (active)"
    typer.echo(diff(versions[old].source, text, f"v{old}", label) or "(no difference)")


@prompts_app.command("publish")
def publish(
    name: str,
    file: Annotated[Path, typer.Argument(help="The new source ('-' reads standard input).")],
    note: _Note,
    by: _By,
    base: Annotated[
        int | None, typer.Option("--base", help="The version you edited (default: the active one).")
    ] = None,
) -> None:
    """Publish a new version of a prompt after checking it."""
    source = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    store = _store()
    active = asyncio.run(store.active())
    if name not in active:
        raise _fail(f"there is no prompt named {name!r}")
    try:
        version = asyncio.run(store.publish(name, source, by, note, base or active[name].version))
    except PublishRefused as exc:
        problems = "".join(f"\n  - {p}" for p in exc.problems)
        raise _fail(f"not published: {exc}{problems}") from exc
    typer.echo(f"{name} version {version.version} is active")


@prompts_app.command("rollback")
def rollback(
    name: str,
    version: Annotated[int, typer.Argument(help="The version to restore.")],
    by: _By,
    note: Annotated[str, typer.Option("--note", help="Why.")] = "",
) -> None:
    """Make an earlier version active again (as a new version)."""
    try:
        restored = asyncio.run(_store().rollback(name, version, by, note))
    except PublishRefused as exc:
        raise _fail(f"not rolled back: {exc}") from exc
    typer.echo(f"{name} version {restored.version} (the text of version {version}) is active")


def register(app: typer.Typer) -> None:
    """Add `carebot prompts` to the command line."""
    app.add_typer(prompts_app, name="prompts")
