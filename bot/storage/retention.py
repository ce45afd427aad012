"""Nothing kept forever: patients silent for CAREBOT_RETENTION_DAYS lose their chat
transcript as by /forget, clinical records go CAREBOT_CLINICAL_RECORD_DAYS after the last case
closed, and older inbox rows and audit details go.

One pass, run by `carebot serve` at start and every hour:
- a patient whose every conversation has been silent past the period, and who has no case
  open or claimed and no legal hold, is erased as `/forget` erases them: the transcript, and
  with it everything when no clinical record is kept (bot/storage/clinical_record.py says
  which is which); the bot's alerts and relays in doctors' chats are blanked by the doctors'
  side;
- a clinical record whose transcript is gone, with no hold and whose last case closed more
  than the record period ago, is erased with the patient;
- raw channel updates (inbox rows, which may still hold a payload that failed) older than the
  period are deleted;
- audit events older than the period keep who did what to which record, and when, but lose
  their details (addresses, reasons given), except those of cases still kept: they are part
  of the clinical record.

Patients are erased one per transaction, at most BATCH per pass: SQLite has one writer, and
patients' messages must not wait behind a long purge. 0 days keeps everything (0 record days:
no record kept apart).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import String, cast, exists, or_
from sqlmodel import Session, col, delete, select, update

from bot.errors import StorageUnavailable
from bot.models import utcnow
from bot.storage.clinical_record import ACTIVE_CASES, erase_patient, held_clause
from bot.storage.repository import Forgotten, Storage, audit_event, forget_patient_rows
from bot.storage.tables import AuditEvent, ChannelUpdate, Conversation, Escalation, Patient

logger = logging.getLogger(__name__)
BATCH = 200


@dataclass
class RetentionReport:
    """What one pass removed."""

    patients: int = 0
    records: int = 0
    updates: int = 0
    audit_details: int = 0
    erased: list[Forgotten] = field(default_factory=list)

    @property
    def anything(self) -> bool:
        return bool(self.patients or self.records or self.updates or self.audit_details)


class Retention:
    """Purge what is older than the retention period."""

    def __init__(
        self,
        storage: Storage,
        days: int,
        record_days: int,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.storage, self.days, self.record_days, self.clock = storage, days, record_days, clock

    async def purge(self) -> RetentionReport:
        """One pass; returns what went (nothing when both periods are 0)."""
        report = RetentionReport()
        now = self.clock()
        if self.record_days > 0:
            cutoff = now - timedelta(days=self.record_days)
            for channel, user_id in await self.storage.run(lambda s: _expired_records(s, cutoff)):
                erased = await self.storage.run(partial(_erase_all, channel=channel, user=user_id))
                if erased.counts:
                    report.records += 1
                    report.erased.append(erased)
        if self.days > 0:
            cutoff = now - timedelta(days=self.days)
            keep = self.record_days > 0
            for channel, user_id in await self.storage.run(lambda s: _expired_patients(s, cutoff)):
                erased = await self.storage.run(
                    partial(_erase, channel=channel, user_id=user_id, keep_record=keep)
                )
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
                "retention: erased %d transcripts, %d clinical records, %d inbox rows, "
                "%d audit details",
                report.patients,
                report.records,
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


def _erase(s: Session, channel: str, user_id: str, keep_record: bool) -> Forgotten:
    return erase_patient(s, channel, user_id, by="retention", keep_record=keep_record)


def _erase_all(s: Session, channel: str, user: str) -> Forgotten:
    return forget_patient_rows(s, channel, user, by="retention")


def _active() -> Any:
    return exists().where(
        col(Escalation.patient_id) == col(Patient.id), col(Escalation.status).in_(ACTIVE_CASES)
    )


def _wrote_since_erasure() -> Any:
    return exists().where(
        col(Conversation.patient_id) == col(Patient.id),
        col(Conversation.last_message_at) > col(Patient.transcript_erased_at),
    )


def _expired_patients(s: Session, cutoff: datetime) -> list[tuple[str, str]]:
    recent = exists().where(
        col(Conversation.patient_id) == col(Patient.id),
        col(Conversation.last_message_at) >= cutoff,
    )
    # A transcript erased already, with nothing written since, is not erased again.
    transcript_left = or_(col(Patient.transcript_erased_at).is_(None), _wrote_since_erasure())
    rows = s.exec(
        select(Patient.channel, Patient.channel_user_id)
        .where(
            col(Patient.created_at) < cutoff, ~recent, ~_active(), ~held_clause(), transcript_left
        )
        .order_by(col(Patient.id))
        .limit(BATCH)
    ).all()
    return [(channel, user_id) for channel, user_id in rows]


def _expired_records(s: Session, cutoff: datetime) -> list[tuple[str, str]]:
    """Patients whose transcript is gone and whose last case closed before `cutoff`."""
    recent_case = exists().where(
        col(Escalation.patient_id) == col(Patient.id),
        or_(col(Escalation.closed_at).is_(None), col(Escalation.closed_at) >= cutoff),
    )
    rows = s.exec(
        select(Patient.channel, Patient.channel_user_id)
        .where(
            col(Patient.transcript_erased_at).is_not(None),
            ~_wrote_since_erasure(),
            ~recent_case,
            ~held_clause(),
        )
        .order_by(col(Patient.id))
        .limit(BATCH)
    ).all()
    return [(channel, user_id) for channel, user_id in rows]


def _expire_records(s: Session, cutoff: datetime) -> tuple[int, int]:
    updates = s.execute(delete(ChannelUpdate).where(col(ChannelUpdate.received_at) < cutoff))
    # A kept case's trail (reads, break-glass reasons, outcome notes) is its clinical record.
    kept_case = exists().where(
        col(AuditEvent.subject_type) == "escalation",
        cast(Escalation.id, String) == col(AuditEvent.subject_id),
    )
    details = s.execute(
        update(AuditEvent)
        .where(
            col(AuditEvent.at) < cutoff,
            cast(AuditEvent.details, String) != "{}",
            ~kept_case,
        )
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
            records=report.records,
            updates=report.updates,
            audit_details=report.audit_details,
        )
    )
    s.commit()
