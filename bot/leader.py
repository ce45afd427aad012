"""One process of several leads: it alone runs the timers (case deadlines and re-alerts,
retention, erasure retries, administrators' alerts), and another takes over when it dies.

PostgreSQL: a session advisory lock, held on a connection of its own; when the process dies
its connection closes and the lock is free for the next one that asks (every few seconds).
SQLite (processes on one host sharing the data folder): an exclusive `flock` on a file in it,
released by the kernel when the process ends. The due times live in the database (a case's
`next_alert_at`, messages' ages), so a new leader picks up where the old one stopped.

One process, the only deployment before issue 26, leads from its first second: nothing
changes for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

logger = logging.getLogger(__name__)
Jobs = Callable[[], list[Coroutine[Any, Any, None]]]


class Leadership:
    """A named lock that one process of a cluster holds."""

    def __init__(self, name: str, engine: Engine, folder: Path) -> None:
        self.name, self.engine, self.folder = name, engine, folder
        self._conn: Connection | None = None
        self._fd: int | None = None

    @property
    def key(self) -> int:
        """The advisory lock's number (64-bit, from the name)."""
        return int.from_bytes(hashlib.sha256(self.name.encode()).digest()[:8], "big", signed=True)

    @property
    def held(self) -> bool:
        return self._conn is not None or self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never waits."""
        if self.held:
            return True
        if self.engine.dialect.name == "postgresql":
            try:
                conn = self.engine.connect()
                got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})
                if got.scalar():
                    conn.commit()  # end the transaction; the session lock stays
                    self._conn = conn
                    return True
                conn.invalidate()
                conn.close()
            except SQLAlchemyError as exc:
                logger.warning(
                    "leadership %s: database unavailable (%s)", self.name, type(exc).__name__
                )
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / f"{self.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def still_held(self) -> bool:
        """Whether the lock is still ours (PostgreSQL: its connection still answers)."""
        if self._conn is None:
            return self._fd is not None
        try:
            self._conn.execute(text("SELECT 1"))
            self._conn.commit()
            return True
        except SQLAlchemyError:
            self.release()
            return False

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                # Closed for real, not back to the pool, where the session (and the lock
                # with it) would live on.
                self._conn.invalidate()
                self._conn.close()
            self._conn = None
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops the flock
            self._fd = None


async def lead(leadership: Leadership, jobs: Jobs, every_s: float, leading: asyncio.Event) -> None:
    """Run `jobs()` while this process leads (with `leading` set, for loops that live
    elsewhere); try to lead every `every_s` while another does; stop the jobs if the lead is
    lost. Cancel to stop (the lock is released)."""
    tasks: list[asyncio.Task[None]] = []
    try:
        while True:
            try:
                if not leading.is_set():
                    if await asyncio.to_thread(leadership.try_acquire):
                        logger.info("this process leads the %s", leadership.name)
                        tasks = [asyncio.create_task(job) for job in jobs()]
                        leading.set()
                elif not await asyncio.to_thread(leadership.still_held):
                    logger.warning("this process lost the lead of the %s", leadership.name)
                    leading.clear()
                    await _cancel(tasks)
                    tasks = []
            except OSError as exc:  # the lock file cannot be made (a read-only data folder)
                # Timers that never start are silent: say so each round, and try again.
                logger.error("leadership %s: %s", leadership.name, type(exc).__name__)
            await asyncio.sleep(every_s)
    finally:
        leading.clear()
        await _cancel(tasks)
        leadership.release()


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
