"""`carebot audit verify|export`: check the audit chain, and copy it out of the database.

`verify` exits 1 and names the first event whose link does not hold. `export` writes the
events as JSON lines (id, time, actor, action, subject, details, digest, link) after a
given id, for an external log a database administrator cannot rewrite: run it from cron
with the last id shipped (`--after`), or pipe it to `logger` for syslog. Details are
exported as stored in the database's clear form (decrypted with the message keys): point it
at a log that may hold them, or pass `--no-details`.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


@audit_app.command("verify")
def verify() -> None:
    """Walk the audit chain; exit 1 at the first event that was removed or changed."""
    from sqlmodel import Session

    from bot.cli import _settings
    from bot.storage.audit_chain import verify as walk
    from bot.storage.migrate import upgrade
    from bot.storage.repository import make_engine

    engine = make_engine(_settings().sqlalchemy_url)
    try:
        upgrade(engine)
        with Session(engine) as s:
            verdict = walk(s)
    finally:
        engine.dispose()
    older = f" ({verdict.unchained} older events were written before the chain began)"
    if verdict.ok:
        typer.echo(
            f"audit chain intact: {verdict.checked} events" + (older if verdict.unchained else "")
        )
        return
    typer.echo(f"audit chain BROKEN at event {verdict.broken_at}: {verdict.reason}", err=True)
    raise typer.Exit(1)


@audit_app.command("export")
def export(
    after: Annotated[int, typer.Option("--after", help="Only events after this id.")] = 0,
    details: Annotated[
        bool, typer.Option("--details/--no-details", help="Include each event's details.")
    ] = True,
) -> None:
    """Print audit events as JSON lines, oldest first, with their chain links."""
    from sqlmodel import Session, col, select

    from bot.cli import _settings
    from bot.storage.migrate import upgrade
    from bot.storage.repository import make_engine
    from bot.storage.tables import AuditEvent

    engine = make_engine(_settings().sqlalchemy_url)
    try:
        upgrade(engine)
        with Session(engine) as s:
            query = (
                select(AuditEvent).where(col(AuditEvent.id) > after).order_by(col(AuditEvent.id))
            )
            for e in s.exec(query):
                line: dict[str, object] = {
                    "id": e.id,
                    "at": e.at.isoformat(),
                    "actor": e.actor,
                    "action": e.action,
                    "subject_type": e.subject_type,
                    "subject_id": e.subject_id,
                    "details_digest": e.details_digest,
                    "chain_hash": e.chain_hash,
                }
                if details:
                    line["details"] = e.details
                typer.echo(json.dumps(line, ensure_ascii=False, default=str))
    finally:
        engine.dispose()


def register(app: typer.Typer) -> None:
    """Add `carebot audit` to the command line."""
    app.add_typer(audit_app, name="audit")
