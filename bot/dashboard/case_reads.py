"""Who read which patient's case: every case page opened and every live stream of a case is
recorded, an administrator sees the list, and a closed case opens only by "breaking the
glass" with a reason.

Reads are audit events like any other, but with their own subject type, so the case's trail
(what was done to it) is not buried under who looked at it. A page refreshing itself is the
same reading and is not recorded again; its live stream was, when it was opened.

A closed case (resolved or expired) is no longer anybody's work: opening it again, for a
complaint, a follow-up or curiosity, is a deliberate act with a reason, recorded in the
case's own trail, and good for an hour. The clinician who resolved it may read it back for
that hour without one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from bot.cases.models import AuditLine, CaseStatus, CaseView
from bot.cases.store import aware
from bot.dashboard.accounts import StaffAccount
from bot.models import utcnow
from bot.storage.repository import Storage, audit_event
from bot.storage.tables import AuditEvent

READ = "case.read"
BREAK_GLASS = "case.break_glass"
READ_SUBJECT = "escalation_read"
CASE_SUBJECT = "escalation"
CLOSED = frozenset({CaseStatus.RESOLVED, CaseStatus.EXPIRED})
GLASS_TTL = timedelta(hours=1)
REASON_MIN, REASON_MAX = 10, 500
# Acts that open a closed case to their author for GLASS_TTL.
OPENS_CLOSED = (BREAK_GLASS, f"escalation.{CaseStatus.RESOLVED.value}")


class GlassRefused(Exception):
    """A reason that does not do (the message says why, for the person who gave it)."""


class CaseReads:
    """Record reads, list them, and guard closed cases."""

    def __init__(self, storage: Storage, clock: Callable[[], datetime] = utcnow) -> None:
        self.storage, self.clock = storage, clock

    async def record(self, case_id: int, reader: StaffAccount, via: str, client: str = "") -> None:
        """`reader` opened case `case_id` (`via` "page" or "stream")."""

        def work(s: Session) -> None:
            s.add(
                audit_event(reader.label, READ, READ_SUBJECT, str(case_id), via=via, client=client)
            )
            s.commit()

        await self.storage.run(work)

    async def open_to(self, case: CaseView, reader: StaffAccount) -> bool:
        """Whether `reader` may read `case` now: any case still open or claimed; a closed one
        within an hour of breaking the glass (or of resolving it)."""
        if case.status not in CLOSED:
            return True
        since = self.clock() - GLASS_TTL

        def work(s: Session) -> bool:
            found = s.exec(
                select(AuditEvent.id)
                .where(
                    AuditEvent.subject_type == CASE_SUBJECT,
                    AuditEvent.subject_id == str(case.id),
                    AuditEvent.actor == reader.label,
                    col(AuditEvent.action).in_(OPENS_CLOSED),
                    col(AuditEvent.at) >= since,
                )
                .limit(1)
            ).first()
            return found is not None

        return await self.storage.run(work)

    async def break_glass(self, case_id: int, reader: StaffAccount, reason: str) -> None:
        """Open a closed case to `reader` for an hour, recording why. Raises GlassRefused."""
        why = " ".join(reason.split())
        if len(why) < REASON_MIN:
            raise GlassRefused(f"say why in at least {REASON_MIN} characters")
        if len(why) > REASON_MAX:
            raise GlassRefused(f"keep the reason under {REASON_MAX} characters")

        def work(s: Session) -> None:
            s.add(audit_event(reader.label, BREAK_GLASS, CASE_SUBJECT, str(case_id), reason=why))
            s.commit()

        await self.storage.run(work)

    async def of_case(self, case_id: int) -> list[AuditLine]:
        """Every read of the case, oldest first (glass breaks are in the case's trail)."""

        def work(s: Session) -> list[AuditLine]:
            rows = s.exec(
                select(AuditEvent)
                .where(
                    AuditEvent.subject_type == READ_SUBJECT,
                    AuditEvent.subject_id == str(case_id),
                )
                .order_by(col(AuditEvent.id))
            ).all()
            return [
                AuditLine(
                    at=aware(e.at) or utcnow(), actor=e.actor, action=e.action, details=e.details
                )
                for e in rows
            ]

        return await self.storage.run(work)
