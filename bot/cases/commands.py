"""`carebot cases list|open`: the doctors' queue from a terminal, and opening a case by hand."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from bot.cases.store import CaseStore
from bot.models import TriageLevel

cases_app = typer.Typer(
    help="The doctors' queue: list cases, open one by hand.", no_args_is_help=True
)


def _store() -> CaseStore:
    from bot.cli import _settings
    from bot.storage.migrate import upgrade
    from bot.storage.repository import Storage, make_engine

    db = make_engine(_settings().sqlalchemy_url)
    upgrade(db)
    return CaseStore(Storage(db))


@cases_app.command("list")
def list_cases(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show open and claimed cases, most urgent and oldest first (no patient text)."""
    views = asyncio.run(_store().queue())
    if as_json:
        typer.echo(json.dumps([v.model_dump(mode="json", exclude={"summary"}) for v in views]))
        return
    if not views:
        typer.echo("No open cases.")
    for v in views:
        minutes = int(v.age_s() // 60)
        who = f" by {v.claimed_by}" if v.claimed_by else ""
        typer.echo(
            f"#{v.id:<5} {v.level.value:<9} {v.status.value}{who:<20} {minutes:>4} min  "
            f"{v.channel}:{v.chat_id}  {', '.join(v.reasons)}"
        )


@cases_app.command("open")
def open_case(
    chat: Annotated[
        str, typer.Argument(help="The patient's chat as CHANNEL:CHAT_ID, e.g. telegram:12345.")
    ],
    reason: Annotated[
        str, typer.Option("--reason", help="Why a doctor should look (shown to doctors).")
    ],
    level: Annotated[TriageLevel, typer.Option("--level", help="How urgent.")] = TriageLevel.URGENT,
    by: Annotated[str, typer.Option("--by", help="Who opens it, for the audit log.")] = "operator",
) -> None:
    """Open a case on a patient's conversation; a running CareBot alerts doctors within seconds."""
    channel, _, chat_id = chat.partition(":")
    if not channel or not chat_id:
        typer.echo("carebot: give the chat as CHANNEL:CHAT_ID, e.g. telegram:12345", err=True)
        raise typer.Exit(2)
    case_id = asyncio.run(
        _store().open_for_chat(
            channel, chat_id, level, reason.strip() or "operator", f"operator:{by}"
        )
    )
    if case_id is None:
        typer.echo(f"carebot: no conversation {chat}", err=True)
        raise typer.Exit(1)
    typer.echo(
        f"case #{case_id} is open ({level.value}); doctors are alerted by the running CareBot"
    )


def register(app: typer.Typer) -> None:
    """Add `carebot cases` to the command line."""
    app.add_typer(cases_app, name="cases")
