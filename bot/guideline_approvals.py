"""Four eyes on guideline files: a page changes what CareBot answers and, through its "when to
get help" criteria, how it triages, so it reaches the index and the criteria only when one
staff account proposed it and another approved it, as safety texts do.

A file is known by the SHA-256 of its bytes: an approval covers exactly what was read, and a
later edit of the file is a new proposal. The bundled pack (`rag/guidelines/`) is admitted as
it is: it ships with the release and is reviewed with the code. Everything else (the
`CAREBOT_GUIDELINE_PATHS` folders at start, `carebot ingest PATH`) is checked by
GuidelineGate: unapproved files are left out of the index (and taken out when an earlier
copy was in it) and set no criteria.

`carebot ingest PATH --by OPERATOR` files the unapproved files as proposals (an operator or
admin, signed in); `carebot guidelines requests|show|approve|reject --by CLINICIAN` decide
them (a clinician or admin, not the proposer). Every step is in the audit log.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from bot.models import utcnow
from bot.storage.repository import audit_event
from bot.storage.tables import GuidelineApproval
from rag.library import BUNDLED

if TYPE_CHECKING:
    from bot.config import Settings


class ApprovalRefused(Exception):
    """A decision that may not be taken (decided already, the proposer's own, wrong role)."""


def digest(data: bytes) -> str:
    """What an approval is for: exactly these bytes."""
    return hashlib.sha256(data).hexdigest()


def bundled(path: Path) -> bool:
    """Whether `path` is a page of the pack shipped with CareBot."""
    return path.resolve().is_relative_to(BUNDLED.resolve())


@dataclass
class GuidelineGate:
    """Admits bundled pages and approved files; remembers the files it refused."""

    approved: set[str]
    refused: dict[str, Path] = field(default_factory=dict)  # digest -> path

    @classmethod
    def load(cls, s: Session) -> GuidelineGate:
        rows = s.exec(
            select(GuidelineApproval.digest).where(GuidelineApproval.status == "approved")
        ).all()
        return cls(approved=set(rows))

    def admit(self, path: Path, data: bytes) -> bool:
        if bundled(path):
            return True
        d = digest(data)
        if d in self.approved:
            return True
        self.refused[d] = path
        return False


def propose(s: Session, gate: GuidelineGate, author: str, author_key: str) -> list[int]:
    """File the files `gate` refused as proposals by `author` (one pending per content)."""
    ids = []
    for d, path in gate.refused.items():
        pending = s.exec(
            select(GuidelineApproval).where(
                GuidelineApproval.digest == d, GuidelineApproval.status == "pending"
            )
        ).first()
        if pending is not None and pending.id is not None:
            ids.append(pending.id)
            continue
        row = GuidelineApproval(
            digest=d, path=str(path)[:1000], proposed_by=author, proposer_key=author_key
        )
        s.add(row)
        s.flush()
        assert row.id is not None
        s.add(
            audit_event(
                author_key, "guideline.proposed", "guideline", str(row.id), path=row.path, digest=d
            )
        )
        ids.append(row.id)
    s.commit()
    return ids


def decide(
    s: Session, approval_id: int, approve: bool, reviewer: str, reviewer_key: str, note: str
) -> GuidelineApproval:
    """A second account approves or rejects a proposed file."""
    row = s.get(GuidelineApproval, approval_id)
    if row is None:
        raise ApprovalRefused(f"no guideline proposal {approval_id}")
    if row.status != "pending":
        raise ApprovalRefused(
            f"guideline proposal {approval_id} was decided already ({row.status})"
        )
    if row.proposer_key == reviewer_key:
        raise ApprovalRefused("the account that proposed a file cannot approve it: four eyes")
    row.status = "approved" if approve else "rejected"
    row.decided_by, row.decided_at, row.note = reviewer, utcnow(), note
    s.add(row)
    s.add(
        audit_event(
            reviewer_key,
            f"guideline.{row.status}",
            "guideline",
            str(approval_id),
            path=row.path,
            digest=row.digest,
            note=note,
        )
    )
    s.commit()
    return row


def pending(s: Session) -> list[GuidelineApproval]:
    """Proposals waiting for a decision, oldest first."""
    return list(
        s.exec(
            select(GuidelineApproval)
            .where(GuidelineApproval.status == "pending")
            .order_by(col(GuidelineApproval.id))
        ).all()
    )


def ingested(s: Session, actor: str, added: int, updated: int, removed: int) -> None:
    """Audit a run that changed the index (who, and how much)."""
    s.add(
        audit_event(
            actor,
            "guidelines.ingested",
            "guideline",
            "index",
            added=added,
            updated=updated,
            removed=removed,
        )
    )
    s.commit()


def start_up_gate(settings: Settings) -> GuidelineGate | None:
    """The gate for what settings ingest and read criteria from; None when only the bundled
    pack is used (it needs no database)."""
    if not settings.guideline_paths:
        return None
    from bot.storage.migrate import upgrade
    from bot.storage.repository import make_engine

    engine = make_engine(settings.sqlalchemy_url)
    try:
        upgrade(engine)
        with Session(engine) as s:
            return GuidelineGate.load(s)
    finally:
        engine.dispose()


def left_out(gate: GuidelineGate | None) -> list[Path]:
    """The files a gate refused, for the start-up warning."""
    return sorted(set(gate.refused.values())) if gate is not None else []
