"""Doctors claiming and closing one case at the same moment: exactly one of them wins.

SQLite ignores SELECT ... FOR UPDATE, so a read-then-write claim let two doctors both "claim"
a case. Here every doctor's database call is held until all have started (a barrier on the
first statement each thread sends), the worst interleaving, and exactly one claim must win.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from bot.cases.models import Actor, CaseStatus, ClaimOutcome
from bot.storage.tables import AuditEvent, Escalation
from bot.workers import WorkerPool
from tests.conftest import RuntimeFactory
from tests.fakes import patient_message

DOCTORS = 4  # as many as a server database's storage pool lets reach it at once


async def one_case(make_runtime: RuntimeFactory) -> tuple[Any, int]:
    """A runtime with one emergency case open."""
    rt = await make_runtime()
    # SQLite gets one storage thread in production, which would serialise the doctors; the
    # claim must be atomic in SQL whatever the pool, so here every doctor has a thread.
    rt.storage.pool = WorkerPool("claims", DOCTORS)
    await rt.engine.handle(patient_message("my husband collapsed and is not breathing", "patient"))
    with Session(rt.storage.engine) as s:
        (case,) = s.exec(select(Escalation)).all()
    assert case.id is not None
    return rt, case.id


@pytest.fixture
def all_at_once() -> Iterator[Any]:
    """Hold each thread's first statement on the escalations until every doctor has sent one."""
    barrier = threading.Barrier(DOCTORS, timeout=10)
    seen = threading.local()
    engines: list[Any] = []

    def hold(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "escalations" in statement and not getattr(seen, "held", False):
            seen.held = True
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()

    def install(engine: Any) -> None:
        event.listen(engine, "before_cursor_execute", hold)
        engines.append(engine)

    yield install
    for engine in engines:
        event.remove(engine, "before_cursor_execute", hold)


async def test_of_doctors_claiming_one_case_at_once_exactly_one_wins(
    make_runtime: RuntimeFactory, all_at_once: Any
) -> None:
    rt, case_id = await one_case(make_runtime)
    all_at_once(rt.storage.engine)
    doctors = [Actor(name=f"Dr {n}", staff_id=n) for n in range(1, DOCTORS + 1)]
    outcomes = await asyncio.gather(*(rt.cases.claim(case_id, d) for d in doctors))
    won = [view for outcome, view in outcomes if outcome is ClaimOutcome.CLAIMED]
    assert len(won) == 1
    assert sorted(o.value for o, _ in outcomes).count(ClaimOutcome.TAKEN.value) == DOCTORS - 1
    with Session(rt.storage.engine) as s:
        stored = s.get(Escalation, case_id)
        claims = s.exec(select(AuditEvent).where(AuditEvent.action == "escalation.claimed")).all()
    assert stored is not None and stored.claimed_by == won[0].claimed_by
    assert len(claims) == 1


async def test_of_closes_at_once_exactly_one_is_recorded(
    make_runtime: RuntimeFactory, all_at_once: Any
) -> None:
    rt, case_id = await one_case(make_runtime)
    all_at_once(rt.storage.engine)
    closes = [
        rt.cases.store.close(case_id, CaseStatus.RESOLVED, f"Dr {n}", f"outcome {n}")
        for n in range(DOCTORS)
    ]
    results = await asyncio.gather(*closes)
    assert sum(r is not None for r in results) == 1
    with Session(rt.storage.engine) as s:
        resolved = s.exec(
            select(AuditEvent).where(AuditEvent.action == "escalation.resolved")
        ).all()
    assert len(resolved) == 1
