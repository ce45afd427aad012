"""`carebot keys new|rotate`: keys for encrypting patients' words at rest."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from sqlalchemy import Column
    from sqlalchemy.engine import Engine

    from bot.config import Settings
    from bot.storage.encryption import TextCipher

keys_app = typer.Typer(help="Keys for encrypting patients' words at rest.", no_args_is_help=True)
BATCH = 500


@keys_app.command("new")
def new() -> None:
    """Print a new key (put it first in CAREBOT_MESSAGE_KEYS; keep it out of the repository)."""
    from cryptography.fernet import Fernet

    typer.echo(Fernet.generate_key().decode())


@keys_app.command("rotate")
def rotate() -> None:
    """Re-encrypt every stored text with the first key of CAREBOT_MESSAGE_KEYS (and encrypt
    text stored before encryption was on); afterwards the other keys can be dropped."""
    from bot.cli import _settings
    from bot.storage.encryption import cipher
    from bot.storage.migrate import upgrade
    from bot.storage.repository import make_engine

    settings = _settings()
    sealer = cipher()
    if sealer is None:
        typer.echo("carebot: set CAREBOT_MESSAGE_KEYS first (carebot keys new)", err=True)
        raise typer.Exit(2)
    # Each migration is announced at INFO: noise in a one-line command's output.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        upgrade(engine)
        done = {
            f"{column.table.name}.{column.name}": _rotate_column(engine, column, sealer)
            for column in sealed_columns()
        }
    finally:
        engine.dispose()
    typer.echo("re-encrypted: " + ", ".join(f"{n} {name}" for name, n in done.items() if n))
    if settings.redis_url is not None:
        typer.echo(f"session memory: {_clear_session_memory(settings)}")


def _clear_session_memory(settings: Settings) -> str:
    """Drop Redis session memory: entries sealed with an old key (or in clear) go with it."""
    import asyncio

    from bot.errors import MemoryUnavailable
    from bot.memory.redis_store import RedisSessionStore

    assert settings.redis_url is not None
    store = RedisSessionStore.from_url(
        settings.redis_url.get_secret_value(), settings.session_ttl_s, settings.history_turns
    )

    async def clear() -> str:
        try:
            return f"{await store.clear_all()} cached chat(s) dropped (rebuilt from the database)"
        except MemoryUnavailable:
            return "Redis unreachable: its entries expire by themselves (CAREBOT_SESSION_TTL_S)"
        finally:
            await store.aclose()

    return asyncio.run(clear())


def sealed_columns() -> list[Column[Any]]:
    """Every column whose type encrypts at rest, found in the tables themselves (a column
    sealed later is rotated without anyone remembering to list it)."""
    from sqlmodel import SQLModel

    import bot.storage.tables  # noqa: F401  (registers the tables)
    from bot.storage.encryption import SealedJSON, SealedText

    return [
        column
        for table in SQLModel.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, SealedText | SealedJSON)
    ]


def _rotate_column(engine: Engine, column: Column[Any], sealer: TextCipher) -> int:
    """Rewrite one column in batches (short transactions: a running CareBot keeps writing),
    reading and writing the stored form past the column's own encryption."""
    from sqlalchemy import select, type_coerce, update

    from bot.storage.encryption import SealedText

    table, raw_type = column.table, column.type.impl_instance  # type: ignore[attr-defined]
    ident = table.c.id
    rotate = sealer.rotate if isinstance(column.type, SealedText) else sealer.rotate_json
    after, count = 0, 0
    while True:
        with engine.begin() as conn:
            rows = conn.execute(
                select(ident, type_coerce(column, raw_type))
                .where(ident > after)
                .order_by(ident)
                .limit(BATCH)
            ).all()
            for row_id, stored in rows:
                if stored:  # empty values stay empty
                    conn.execute(
                        update(table)
                        .where(ident == row_id)
                        .values({column.name: type_coerce(rotate(stored), raw_type)})
                    )
                    count += 1
        if not rows:
            return count
        after = rows[-1][0]


def register(app: typer.Typer) -> None:
    """Add `carebot keys` to the `carebot` CLI."""
    app.add_typer(keys_app, name="keys")
