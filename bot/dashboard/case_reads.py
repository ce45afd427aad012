"""Who read which patient's case: every case page opened and every live stream of a case is
recorded, an administrator sees the list, and a closed case opens only by "breaking the
glass" with a reason.

Reads are audit events like any other, but with their own subject type, so the case's trail
(what was done to it) is not buried under who looked at it. Every showing of a case's text
counts: its page, its live stream, its summary line in the queue, and the doctors' Telegram
alerts and relays. What a reader cannot do is skip the record: whether a read is "the same
reading" is decided here, from the record itself (the same reader, case and way within
READ_WINDOW), never from anything the client sends. A page left open and refreshing itself
therefore leaves one line per READ_WINDOW, which is how long it was read.

A closed case (resolved or expired) is no longer anybody's work: opening it again, for a
complaint, a follow-up or curiosity, is a deliberate act with a reason, recorded in the
case's own trail, and good for an hour. The clinician who resolved it may read it back for
that hour without one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from bot.cases.models import READ, READ_SUBJECT, AuditLine, CaseStatus, CaseView
from bot.cases.store import aware
from bot.dashboard.accounts import StaffAccount
from bot.models import utcnow
from bot.storage.repository import Storage, audit_event
from bot.storage.tables import AuditEvent

BREAK_GLASS = "case.break_glass"
CASE_SUBJECT = "escalation"
CLOSED = frozenset({CaseStatus.RESOLVED, CaseStatus.EXPIRED})
GLASS_TTL = timedelta(hours=1)
READ_WINDOW = timedelta(minutes=5)
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
        await self.shown([case_id], reader.label, via, client)

    async def shown(self, case_ids: Sequence[int], reader: str, via: str, client: str = "") -> None:
        """Record that the text of `case_ids` was shown to `reader` (an audit label: a staff
        account, or a Telegram chat) by way of `via`; a read already on record for the same
        reader, case and way within READ_WINDOW is the same reading."""
        if not case_ids:
            return
        since = self.clock() - READ_WINDOW
        wanted = [str(c) for c in dict.fromkeys(case_ids)]

        def work(s: Session) -> None:
            recent = s.exec(
                select(AuditEvent).where(
                    AuditEvent.subject_type == READ_SUBJECT,
                    col(AuditEvent.subject_id).in_(wanted),
                    AuditEvent.actor == reader,
                    col(AuditEvent.at) >= since,
                )
            ).all()
            seen = {e.subject_id for e in recent if e.details.get("via") == via}
            for case_id in wanted:
                if case_id not in seen:
                    s.add(audit_event(reader, READ, READ_SUBJECT, case_id, via=via, client=client))
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
