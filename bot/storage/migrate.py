"""Bring the database schema to the newest Alembic revision."""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Engine

from bot.leader import Leadership

MIGRATIONS = Path(__file__).with_name("migrations")
LOCK_KEY = 0x636172656D696772  # "caremigr": the advisory lock migrating processes take in turn


def alembic_config(engine: Engine) -> Config:
    """Return an Alembic config bound to `engine` (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, wait_s: int = 300) -> None:
    """Apply every pending migration, one process at a time: workers starting together
    (`carebot serve --workers N`, pods of one deployment) would otherwise both create the
    same tables. The others wait (at most `wait_s`), then find nothing left to do.

    PostgreSQL: an advisory lock on a connection of its own (an unreachable database fails
    at once, as before). SQLite: a `flock` beside the database file.
    """
    database = engine.url.database or ""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text(f"SET lock_timeout = '{int(wait_s)}s'"))
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
            conn.commit()
            try:
                command.upgrade(alembic_config(engine), "head")
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                conn.commit()
        return
    if engine.dialect.name != "sqlite" or database in ("", ":memory:"):
        command.upgrade(alembic_config(engine), "head")
        return
    lock = Leadership("migrations", engine, Path(database).parent)
    deadline = time.monotonic() + wait_s
    while not lock.try_acquire():
        if time.monotonic() > deadline:
            raise TimeoutError("another process has been migrating the database for too long")
        time.sleep(0.2)
    try:
        command.upgrade(alembic_config(engine), "head")
    finally:
        lock.release()
