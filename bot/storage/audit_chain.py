"""Tamper-evident audit: every audit event is a link in a hash chain.

Each event's `chain_hash` is SHA-256 over the previous event's link and the event's own
fields (id, time, actor, action, subject, and the digest of its details as written). Deleting
an event, reordering, or changing who, what, when or to which record breaks every later link;
`carebot audit verify` walks the chain and names the first broken event. The chain's newest
link is kept in a one-row table (made by migration 0016), locked while events are appended,
so every process appends in one order: a write to the row comes first, before the head is
read (PostgreSQL: its row lock; SQLite: its one write lock, taken there, so two appenders
never read the same head).

Details may later be emptied on purpose (retention after the legal period, a patient's
erasure): their digest stays, so the chain still verifies; details that are present must
match their digest. Whoever can rewrite the whole database can also rebuild a chain: the
defence against that is a copy outside it, `carebot audit export` (JSON lines, each with its
link) to an external log, or CAREBOT_AUDIT_SYSLOG.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, insert, update
from sqlalchemy import select as sql_select
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from bot.storage.tables import AuditChainHead, AuditEvent

logger = logging.getLogger(__name__)
GENESIS = "0" * 64
_HEAD = "audit_chain_head"  # Session.info key: the head read (and locked) before the flush


def details_digest(details: Any) -> str:
    """SHA-256 of the details as written (canonical JSON)."""
    text = json.dumps(details or {}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _moment(at: datetime) -> str:
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def link(previous: str, e: AuditEvent) -> str:
    """The chain hash of `e` after `previous`."""
    fields = [
        previous,
        str(e.id),
        _moment(e.at),
        e.actor,
        e.action,
        e.subject_type,
        e.subject_id,
        e.details_digest or "",
    ]
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _ctx: object, _instances: object) -> None:
    new = [o for o in session.new if isinstance(o, AuditEvent)]
    if not new:
        return
    for e in new:
        e.details_digest = details_digest(e.details)
    if _HEAD not in session.info:
        # Locked before the INSERTs take their ids: a concurrent appender waits here, so the
        # chain's order is the ids' order. A write, not SELECT ... FOR UPDATE, which SQLite
        # ignores: there two transactions read the same head and forked the chain.
        conn = session.connection()
        mine = col(AuditChainHead.id) == 1
        conn.execute(update(AuditChainHead).where(mine).values(id=AuditChainHead.id))
        query = sql_select(col(AuditChainHead.chain_hash)).where(mine)
        head = conn.execute(query.with_for_update()).first()
        session.info[_HEAD] = head[0] if head is not None else None


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _ctx: object) -> None:
    if _HEAD not in session.info:
        return
    # After a flush the session still lists what it inserted, now with their ids.
    new = sorted(
        (o for o in session.new if isinstance(o, AuditEvent) and o.chain_hash is None),
        key=lambda o: o.id or 0,
    )
    if not new:
        return
    stored = session.info.pop(_HEAD)
    previous = stored or GENESIS
    conn = session.connection()
    for e in new:
        previous = link(previous, e)
        conn.execute(
            update(AuditEvent).where(col(AuditEvent.id) == e.id).values(chain_hash=previous)
        )
        set_committed_value(e, "chain_hash", previous)
    last = new[-1].id
    if stored is None:
        conn.execute(insert(AuditChainHead).values(id=1, chain_hash=previous, event_id=last))
    else:
        conn.execute(
            update(AuditChainHead)
            .where(col(AuditChainHead.id) == 1)
            .values(chain_hash=previous, event_id=last)
        )


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _forget_head(session: Session) -> None:
    session.info.pop(_HEAD, None)


@dataclass
class Verdict:
    """What `verify` found."""

    checked: int = 0
    unchained: int = 0  # events written before the chain began (older CareBot)
    broken_at: int | None = None  # the first event whose link does not hold
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None and not self.reason


# Details emptied on purpose (retention; a patient's erasure).
REDACTIONS: tuple[dict[str, str], ...] = ({}, {"redacted": "patient erased"})


def verify(session: Session) -> Verdict:
    """Walk the chain from the first linked event; stop at the first that does not hold."""
    verdict = Verdict()
    previous = GENESIS
    last_id: int | None = None
    for e in session.exec(select(AuditEvent).order_by(col(AuditEvent.id))):
        if e.chain_hash is None:
            if last_id is not None:  # a gap of unlinked events inside the chain
                verdict.broken_at, verdict.reason = e.id, "an event without a link"
                return verdict
            verdict.unchained += 1
            continue
        if link(previous, e) != e.chain_hash:
            verdict.broken_at = e.id
            verdict.reason = "its link does not follow (an event before it removed or changed)"
            return verdict
        if e.details not in REDACTIONS and details_digest(e.details) != e.details_digest:
            verdict.broken_at, verdict.reason = e.id, "its details were changed"
            return verdict
        previous, last_id = e.chain_hash, e.id
        verdict.checked += 1
    head = session.get(AuditChainHead, 1)
    if head is not None and (head.chain_hash != previous or head.event_id != last_id):
        verdict.broken_at = last_id
        verdict.reason = "the newest events were removed (the chain's head names a later one)"
    return verdict
