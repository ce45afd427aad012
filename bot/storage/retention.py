"""Nothing kept forever: patients silent for CAREBOT_RETENTION_DAYS are erased as by /forget,
and older inbox rows and audit details go.

One pass, run by `carebot serve` at start and every hour:
- a patient whose every conversation has been silent past the period, and who has no case
  open or claimed, is erased exactly as `/forget` erases them (messages, cases, inbox rows,
  the cases' audit details; the bot's alerts and relays in doctors' chats are blanked by the
  doctors' side);
- raw channel updates (inbox rows, which may still hold a payload that failed) older than the
  period are deleted;
- audit events older than the period keep who did what to which record, and when, but lose
  their details (outcome notes, addresses, reasons given).

Patients are erased one per transaction, at most BATCH per pass: SQLite has one writer, and
patients' messages must not wait behind a long purge. 0 days keeps everything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import String, cast, exists
from sqlmodel import Session, col, delete, select, update

from bot.errors import StorageUnavailable
from bot.models import utcnow
from bot.storage.repository import Forgotten, Storage, audit_event, forget_patient_rows
from bot.storage.tables import AuditEvent, ChannelUpdate, Conversation, Escalation, Patient

logger = logging.getLogger(__name__)
BATCH = 200
ACTIVE_CASES = ("open", "claimed")


@dataclass
class RetentionReport:
    """What one pass removed."""

    patients: int = 0
    updates: int = 0
    audit_details: int = 0
    erased: list[Forgotten] = field(default_factory=list)

    @property
    def anything(self) -> bool:
        return bool(self.patients or self.updates or self.audit_details)


class Retention:
    """Purge what is older than the retention period."""

    def __init__(self, storage: Storage, days: int, clock: Callable[[], datetime] = utcnow) -> None:
        self.storage, self.days, self.clock = storage, days, clock

    async def purge(self) -> RetentionReport:
        """One pass; returns what went (nothing when the period is 0)."""
        report = RetentionReport()
        if self.days <= 0:
            return report
        cutoff = self.clock() - timedelta(days=self.days)
        for channel, user_id in await self.storage.run(lambda s: _expired_patients(s, cutoff)):
            erased = await self.storage.run(partial(_erase, channel=channel, user_id=user_id))
            if erased.counts:
                report.patients += 1
                report.erased.append(erased)
        report.updates, report.audit_details = await self.storage.run(
            lambda s: _expire_records(s, cutoff)
        )
        if report.anything:
            await self.storage.run(lambda s: _audited(s, report, self.days))
            await self.storage.scrub()
            logger.info(
                "retention: erased %d patients, %d inbox rows, %d audit details",
                report.patients,
                report.updates,
                report.audit_details,
            )
        return report

    async def run(self, every_s: float, erased: Callable[[Forgotten], Awaitable[None]]) -> None:
        """Purge now and every `every_s`, handing each erased patient to `erased` (the case
        service, which has the doctors' side blank its messages). Never raises."""
        while True:
            try:
                report = await self.purge()
                for one in report.erased:
                    await erased(one)
            except StorageUnavailable:
                logger.warning("retention: the database is unavailable; trying again later")
            await asyncio.sleep(every_s)


def _erase(s: Session, channel: str, user_id: str) -> Forgotten:
    return forget_patient_rows(s, channel, user_id, by="retention")


def _expired_patients(s: Session, cutoff: datetime) -> list[tuple[str, str]]:
    recent = exists().where(
        col(Conversation.patient_id) == col(Patient.id),
        col(Conversation.last_message_at) >= cutoff,
    )
    active = exists().where(
        col(Escalation.patient_id) == col(Patient.id), col(Escalation.status).in_(ACTIVE_CASES)
    )
    rows = s.exec(
        select(Patient.channel, Patient.channel_user_id)
        .where(col(Patient.created_at) < cutoff, ~recent, ~active)
        .order_by(col(Patient.id))
        .limit(BATCH)
    ).all()
    return [(channel, user_id) for channel, user_id in rows]


def _expire_records(s: Session, cutoff: datetime) -> tuple[int, int]:
    updates = s.execute(delete(ChannelUpdate).where(col(ChannelUpdate.received_at) < cutoff))
    details = s.execute(
        update(AuditEvent)
        .where(col(AuditEvent.at) < cutoff, cast(AuditEvent.details, String) != "{}")
        .values(details={})
    )
    s.commit()
    return int(updates.rowcount), int(details.rowcount)  # type: ignore[attr-defined]


def _audited(s: Session, report: RetentionReport, days: int) -> None:
    s.add(
        audit_event(
            "retention",
            "retention.purged",
            "database",
            "retention",
            days=days,
            patients=report.patients,
            updates=report.updates,
            audit_details=report.audit_details,
        )
    )
    s.commit()
