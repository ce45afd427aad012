"""Prompt versions in the database: publish, roll back, drafts, and live reload.

The files in `prompts/` are version 1 of each prompt. Operators publish new versions (who,
when, why); exactly one version per prompt is active, and every running CareBot picks the
active one up within seconds (it polls a generation number). Publishing is checked twice: the
draft must pass `PromptLibrary.problems`, and it must start from the version that is active
now, so two operators editing the same prompt cannot overwrite each other unseen.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, col, select

from bot.errors import ConfigError, StorageUnavailable
from bot.models import utcnow
from bot.prompt_approvals import (
    ApprovalRequest,
    ApprovalStatus,
    Change,
    PromptReviews,
    PublishRefused,
    open_request,
)
from bot.prompts import PromptLibrary
from bot.storage.repository import Storage, audit_event
from bot.storage.tables import PromptApproval, PromptDraft, PromptVersion

logger = logging.getLogger(__name__)


class Version(BaseModel):
    """One version of a prompt."""

    name: str
    version: int
    source: str
    author: str
    note: str
    active: bool
    created_at: datetime
    approved_by: str | None = None


class Draft(BaseModel):
    """An operator's saved, unpublished edit."""

    name: str
    author: str
    source: str
    base_version: int
    updated_at: datetime


def _version(row: PromptVersion) -> Version:
    return Version.model_validate(row, from_attributes=True)


def diff(old: str, new: str, old_label: str = "active", new_label: str = "draft") -> str:
    """A unified diff of two sources ("" when they are the same)."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), old_label, new_label
    )
    return "".join(lines)


class PromptStore:
    """Versions and drafts of the prompts of one library."""

    def __init__(self, storage: Storage, library: PromptLibrary) -> None:
        self.storage, self.library = storage, library
        self.reviews = PromptReviews(self)  # the changes that wait for a second account

    async def seed(self) -> None:
        """Make the shipped files version 1 of every prompt that has no version yet."""

        def work(s: Session) -> None:
            known = set(s.exec(select(PromptVersion.name).distinct()).all())
            for name in self.library.names():
                if name not in known:
                    s.add(
                        PromptVersion(
                            name=name,
                            version=1,
                            source=self.library.shipped[name],
                            author="prompts/ folder",
                            note="shipped with CareBot",
                            active=True,
                        )
                    )
            s.commit()

        await self.storage.run(work)

    async def active(self) -> dict[str, Version]:
        """The active version of every prompt."""

        def work(s: Session) -> dict[str, Version]:
            rows = s.exec(select(PromptVersion).where(col(PromptVersion.active))).all()
            return {r.name: _version(r) for r in rows}

        return await self.storage.run(work)

    async def history(self, name: str) -> list[Version]:
        """Every version of a prompt, newest first."""

        def work(s: Session) -> list[Version]:
            rows = s.exec(
                select(PromptVersion)
                .where(PromptVersion.name == name)
                .order_by(col(PromptVersion.version).desc())
            ).all()
            return [_version(r) for r in rows]

        return await self.storage.run(work)

    async def version(self, name: str, version: int) -> Version | None:
        """One version of a prompt."""
        return next((v for v in await self.history(name) if v.version == version), None)

    async def generation(self) -> int:
        """A number that changes whenever any version is published or activated."""

        def work(s: Session) -> int:
            return int(s.exec(select(func.max(PromptVersion.id))).one() or 0)

        return await self.storage.run(work)

    async def publish(
        self,
        name: str,
        source: str,
        author: str,
        note: str,
        base_version: int,
        author_key: str | None = None,
    ) -> Version | ApprovalRequest:
        """Publish `source` as the next version; refused when invalid or not based on the
        active version. A change to a safety-critical text is not published but waits for a
        clinician's approval (the ApprovalRequest returned). `author_key` names the account
        (default: `author`), so that nobody approves their own change."""
        problems = self.library.problems(name, source)
        if problems:
            raise PublishRefused("the draft is not valid", problems)
        if not note.strip():
            raise PublishRefused("a change note is required")
        change = Change(name, source, author, author_key or author, note.strip(), base_version)
        return self.use(await self.storage.run(lambda s: self._submit(s, change)))

    async def rollback(
        self, name: str, version: int, author: str, note: str, author_key: str | None = None
    ) -> Version | ApprovalRequest:
        """Publish an earlier version's text again, as a new version (or ask for approval,
        as `publish` does)."""
        old = await self.version(name, version)
        if old is None:
            raise PublishRefused(f"{name} has no version {version}")
        problems = self.library.problems(name, old.source)
        if problems:  # written under older rules: it cannot come back as it is
            raise PublishRefused(f"version {version} is not valid today", problems)
        current = (await self.active())[name]
        reason = note.strip() or f"rollback to version {version}"
        change = Change(
            name, old.source, author, author_key or author, reason, current.version, version
        )
        return self.use(await self.storage.run(lambda s: self._submit(s, change)))

    def _submit(self, s: Session, change: Change) -> Version | ApprovalRequest:
        current = self.current(s, change)
        texts = self.library.safety_changes(change.name, current.source, change.source)
        if not texts:
            return self.activate(s, change, current)
        return open_request(s, change, texts, current.version)

    def current(self, s: Session, change: Change) -> PromptVersion:
        """The active version, locked; PublishRefused unless `change` is based on it."""
        current = s.exec(
            select(PromptVersion)
            .where(PromptVersion.name == change.name, col(PromptVersion.active))
            .with_for_update()
        ).first()
        if current is None:
            raise PublishRefused(f"there is no prompt named {change.name!r}")
        if current.version != change.base_version:
            raise PublishRefused(
                f"{change.name} changed while you edited it: version {current.version} was "
                f"published by {current.author} ({current.note!r}) after your version "
                f"{change.base_version}. Review the diff against version {current.version} and "
                "publish again."
            )
        return current

    def activate(
        self, s: Session, change: Change, current: PromptVersion, approver: str | None = None
    ) -> Version:
        """Make `change` the active version (inside `s`, after every check has passed); the
        caller passes the result to `use`."""
        current.active = False
        row = PromptVersion(
            name=change.name,
            version=current.version + 1,
            source=change.source,
            author=change.author,
            note=change.note,
            active=True,
            approved_by=approver,
        )
        s.add(current)
        s.add(row)
        s.flush()
        details: dict[str, object] = {"version": row.version, "from": current.version}
        if change.restored is not None:
            details["restored"] = change.restored
        if approver is not None:
            details["approved_by"] = approver
        s.add(
            audit_event(
                change.author_key,
                f"prompt.{change.action}",
                "prompt",
                change.name,
                note=change.note,
                **details,
            )
        )
        for stale in s.exec(  # written against a version that is no longer active
            select(PromptApproval).where(
                PromptApproval.name == change.name,
                PromptApproval.status == ApprovalStatus.PENDING,
            )
        ).all():
            stale.status, stale.decided_at = ApprovalStatus.SUPERSEDED, utcnow()
            s.add(stale)
        s.commit()
        return _version(row)

    def use(self, outcome: Version | ApprovalRequest) -> Version | ApprovalRequest:
        """Apply a version just activated to this worker's library at once (on the event
        loop, not in the storage thread); others reload it within seconds."""
        if isinstance(outcome, Version):
            self.library.apply(outcome.name, outcome.source, outcome.version)
        return outcome

    async def save_draft(self, name: str, author: str, source: str, base_version: int) -> Draft:
        """Keep an operator's edit (one draft per prompt and operator)."""

        def work(s: Session) -> Draft:
            row = s.exec(
                select(PromptDraft).where(PromptDraft.name == name, PromptDraft.author == author)
            ).first() or PromptDraft(name=name, author=author, source=source, base_version=0)
            row.source, row.base_version, row.updated_at = source, base_version, utcnow()
            s.add(row)
            s.commit()
            return Draft.model_validate(row, from_attributes=True)

        return await self.storage.run(work)

    async def draft(self, name: str, author: str) -> Draft | None:
        """An operator's saved draft of a prompt."""

        def work(s: Session) -> Draft | None:
            row = s.exec(
                select(PromptDraft).where(PromptDraft.name == name, PromptDraft.author == author)
            ).first()
            return Draft.model_validate(row, from_attributes=True) if row else None

        return await self.storage.run(work)

    async def discard_draft(self, name: str, author: str) -> None:
        """Forget an operator's draft (after publishing it, or on request)."""

        def work(s: Session) -> None:
            row = s.exec(
                select(PromptDraft).where(PromptDraft.name == name, PromptDraft.author == author)
            ).first()
            if row is not None:
                s.delete(row)
                s.commit()

        await self.storage.run(work)


class PromptReloader:
    """Keep this worker's library on the active versions (checked every `interval_s`)."""

    def __init__(self, store: PromptStore, interval_s: float = 1.0) -> None:
        self.store, self.interval_s = store, interval_s
        self._generation = -1

    async def check(self) -> list[str]:
        """Apply versions published elsewhere; return the prompts that changed."""
        generation = await self.store.generation()
        if generation == self._generation:
            return []
        changed = []
        library = self.store.library
        for name, version in (await self.store.active()).items():
            if name in library.versions and library.versions[name] != version.version:
                try:
                    library.apply(name, version.source, version.version)
                    changed.append(name)
                except ConfigError as exc:  # keep serving the version in use
                    logger.error("prompt %s version %s not applied: %s", name, version.version, exc)
        self._generation = generation
        if changed:
            logger.info("prompts reloaded: %s", {n: library.versions[n] for n in changed})
        return changed

    async def run(self) -> None:
        """Check until cancelled."""
        while True:
            try:
                await self.check()
            except StorageUnavailable as exc:
                logger.warning("prompt versions not checked: %s", exc)
            await asyncio.sleep(self.interval_s)
