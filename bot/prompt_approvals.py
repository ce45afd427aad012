"""Four eyes on safety-critical prompts: approval requests, and the reviews that decide them.

A change to a text marked `safety_critical` (bot/prompts.py) is not published but recorded
here as a request (by PromptStore.publish, which makes that decision). A second account whose
role approves such texts (StaffAccount.approves_safety_texts: clinicians and admins) approves
it, which publishes it from the version it was written against, or turns it down with a
reason; its author may withdraw it. Every step is audited, and a request written against a
version that is no longer active can only be withdrawn (the author writes it again).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel
from sqlmodel import Session, col, select

from bot.models import utcnow
from bot.storage.repository import audit_event
from bot.storage.tables import PromptApproval, PromptVersion

if TYPE_CHECKING:
    from bot.prompt_store import PromptStore, Version

logger = logging.getLogger(__name__)


class PublishRefused(Exception):
    """A draft that may not be published: invalid, or based on an older version."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


@dataclass(frozen=True)
class Change:
    """A source someone wants to make active."""

    name: str
    source: str
    author: str
    author_key: str
    note: str
    base_version: int
    restored: int | None = None

    @property
    def action(self) -> str:
        return "published" if self.restored is None else "rolled_back"


class ApprovalStatus(StrEnum):
    """Where a change to a safety-critical prompt stands."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    SUPERSEDED = "superseded"  # another version became active first, or a newer request


class Reviewer(BaseModel):
    """Who decides on a waiting change: shown name, account key, and whether their role
    lets them approve (StaffAccount.approves_safety_texts)."""

    name: str
    key: str
    approves: bool


class ApprovalRequest(BaseModel):
    """A change to safety-critical texts, waiting for (or past) a second account's review."""

    id: int
    name: str
    source: str
    base_version: int
    active_version: int  # when read: a pending request on an older base cannot be approved
    note: str
    action: str
    restored: int | None
    changes: list[str]
    author: str
    author_key: str
    status: ApprovalStatus
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str
    version: int | None


def _request(row: PromptApproval, active_version: int) -> ApprovalRequest:
    return ApprovalRequest.model_validate({**row.model_dump(), "active_version": active_version})


def _active_numbers(s: Session) -> dict[str, int]:
    rows = s.exec(select(PromptVersion).where(col(PromptVersion.active))).all()
    return {r.name: r.version for r in rows}


def open_request(s: Session, change: Change, texts: list[str], active: int) -> ApprovalRequest:
    """Record `change` as waiting for approval (inside the publishing transaction)."""
    for mine in s.exec(  # one open request per author and prompt: the newest
        select(PromptApproval).where(
            PromptApproval.name == change.name,
            PromptApproval.author_key == change.author_key,
            PromptApproval.status == ApprovalStatus.PENDING,
        )
    ).all():
        mine.status, mine.decided_at = ApprovalStatus.SUPERSEDED, utcnow()
        s.add(mine)
    row = PromptApproval(
        name=change.name,
        source=change.source,
        base_version=change.base_version,
        note=change.note,
        action=change.action,
        restored=change.restored,
        changes=texts,
        author=change.author,
        author_key=change.author_key,
    )
    s.add(row)
    s.flush()
    s.add(
        audit_event(
            change.author_key,
            "prompt.approval_requested",
            "prompt",
            change.name,
            request=row.id,
            base=change.base_version,
            texts=texts,
            note=change.note,
        )
    )
    s.commit()
    logger.info("prompt %s: request %s waits for approval", change.name, row.id)
    return _request(row, active)


class PromptReviews:
    """The waiting changes of one prompt store, and the decisions on them."""

    def __init__(self, store: PromptStore) -> None:
        self.store = store

    async def requests(self, name: str | None = None) -> list[ApprovalRequest]:
        """Changes waiting for approval (of one prompt, or all), oldest first."""

        def work(s: Session) -> list[ApprovalRequest]:
            query = select(PromptApproval).where(PromptApproval.status == ApprovalStatus.PENDING)
            if name is not None:
                query = query.where(PromptApproval.name == name)
            rows = s.exec(query.order_by(col(PromptApproval.id))).all()
            active = _active_numbers(s)
            return [_request(r, active.get(r.name, 0)) for r in rows]

        return await self.store.storage.run(work)

    async def decided(self, limit: int = 20) -> list[ApprovalRequest]:
        """The latest requests no longer waiting, newest first."""

        def work(s: Session) -> list[ApprovalRequest]:
            rows = s.exec(
                select(PromptApproval)
                .where(PromptApproval.status != ApprovalStatus.PENDING)
                .order_by(col(PromptApproval.id).desc())
                .limit(limit)
            ).all()
            active = _active_numbers(s)
            return [_request(r, active.get(r.name, 0)) for r in rows]

        return await self.store.storage.run(work)

    async def request(self, request_id: int) -> ApprovalRequest | None:
        """One request, whatever its status."""

        def work(s: Session) -> ApprovalRequest | None:
            row = s.get(PromptApproval, request_id)
            return _request(row, _active_numbers(s).get(row.name, 0)) if row else None

        return await self.store.storage.run(work)

    async def approve(self, request_id: int, reviewer: Reviewer, note: str = "") -> Version:
        """Publish a waiting change: only a clinician or admin, never its own author."""

        def work(s: Session) -> Version:
            row = _decidable(s, request_id, reviewer)
            if not reviewer.approves:
                raise PublishRefused(
                    "only a clinician or an admin can approve a change to a safety-critical text"
                )
            problems = self.store.library.problems(row.name, row.source)
            if problems:
                raise PublishRefused("the change is not valid", problems)
            change = Change(
                row.name,
                row.source,
                row.author,
                row.author_key,
                row.note,
                row.base_version,
                row.restored,
            )
            current = self.store.current(s, change)
            _decide(s, row, ApprovalStatus.APPROVED, reviewer, note)
            row.version = current.version + 1
            return self.store.activate(s, change, current, approver=reviewer.name)

        version = await self.store.storage.run(work)
        self.store.use(version)
        return version

    async def reject(self, request_id: int, reviewer: Reviewer, note: str) -> ApprovalRequest:
        """Turn a waiting change down, saying why (a clinician or admin)."""
        if not note.strip():
            raise PublishRefused("say why the change is turned down")

        def work(s: Session) -> ApprovalRequest:
            row = _decidable(s, request_id, reviewer)
            if not reviewer.approves:
                raise PublishRefused("only a clinician or an admin can turn a change down")
            _decide(s, row, ApprovalStatus.REJECTED, reviewer, note.strip())
            s.commit()
            return _request(row, _active_numbers(s).get(row.name, 0))

        return await self.store.storage.run(work)

    async def withdraw(self, request_id: int, author_key: str) -> ApprovalRequest:
        """The author takes their waiting change back."""

        def work(s: Session) -> ApprovalRequest:
            row = s.get(PromptApproval, request_id)
            if row is None or row.author_key != author_key:
                raise PublishRefused(f"you have no change numbered {request_id}")
            if row.status != ApprovalStatus.PENDING:
                raise PublishRefused(f"change {request_id} is already {row.status}")
            row.status, row.decided_at = ApprovalStatus.WITHDRAWN, utcnow()
            s.add(row)
            s.add(
                audit_event(
                    author_key, "prompt.approval_withdrawn", "prompt", row.name, request=row.id
                )
            )
            s.commit()
            return _request(row, _active_numbers(s).get(row.name, 0))

        return await self.store.storage.run(work)


def _decidable(s: Session, request_id: int, reviewer: Reviewer) -> PromptApproval:
    row = s.exec(
        select(PromptApproval).where(PromptApproval.id == request_id).with_for_update()
    ).first()
    if row is None:
        raise PublishRefused(f"there is no change numbered {request_id}")
    if row.status != ApprovalStatus.PENDING:
        raise PublishRefused(f"change {request_id} is already {row.status}")
    if reviewer.key == row.author_key:
        raise PublishRefused("you proposed this change: a second person must review it (four eyes)")
    return row


def _decide(
    s: Session,
    row: PromptApproval,
    status: ApprovalStatus,
    reviewer: Reviewer,
    note: str,
) -> None:
    row.status, row.decided_at = status, utcnow()
    row.decided_by, row.decision_note = reviewer.name, note
    s.add(row)
    s.add(
        audit_event(
            reviewer.key,
            f"prompt.approval_{status}",
            "prompt",
            row.name,
            request=row.id,
            author=row.author_key,
            note=note,
        )
    )
