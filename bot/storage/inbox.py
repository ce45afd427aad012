"""Channel updates kept from arrival until handled: nothing lost on a crash, none twice.

An update whose handling fails (its reply could not be delivered) is tried again later with
growing pauses; after the last attempt it is marked failed and its payload (patient text)
dropped, so one broken update is never replayed forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, or_, select

from bot.models import utcnow
from bot.storage.repository import Storage
from bot.storage.tables import ChannelUpdate, ChatLease


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how soon a failed update is tried again."""

    attempts: int = 5
    first_delay_s: float = 10.0
    max_delay_s: float = 600.0

    def delay_s(self, failures: int) -> float:
        """The pause after the `failures`-th failure (doubling, capped)."""
        return float(min(self.first_delay_s * 2 ** max(failures - 1, 0), self.max_delay_s))


def _due(now: datetime, quiet_s: float) -> Any:
    """Kept updates to (re)try now: past their retry time, or never tried and `quiet_s` old
    (long enough that it is not one still being handled)."""
    return or_(
        col(ChannelUpdate.next_attempt_at) <= now,
        col(ChannelUpdate.next_attempt_at).is_(None)
        & (col(ChannelUpdate.received_at) <= now - timedelta(seconds=quiet_s)),
    )


class UpdateInbox:
    """The updates of one channel, by the platform's update id."""

    def __init__(self, storage: Storage, channel: str, policy: RetryPolicy | None = None) -> None:
        self.storage, self.channel = storage, channel
        self.policy = policy or RetryPolicy()

    async def add(self, update_id: int, chat_id: str | None, payload: dict[str, Any]) -> bool:
        """Keep an update; False when it was seen before (a redelivery)."""

        def work(s: Session) -> bool:
            s.add(
                ChannelUpdate(
                    channel=self.channel, update_id=update_id, chat_id=chat_id, payload=payload
                )
            )
            try:
                s.commit()
            except IntegrityError:
                s.rollback()
                return False
            return True

        return await self.storage.run(work)

    def _row(self, s: Session, update_id: int) -> ChannelUpdate | None:
        return s.exec(
            select(ChannelUpdate).where(
                ChannelUpdate.channel == self.channel, ChannelUpdate.update_id == update_id
            )
        ).first()

    async def finish(self, update_id: int, status: str = "done") -> None:
        """Mark an update handled and drop its payload (it holds patient text)."""

        def work(s: Session) -> None:
            row = self._row(s, update_id)
            if row is not None:
                row.status, row.payload, row.done_at = status, None, utcnow()
                row.next_attempt_at = None
                s.add(row)
                s.commit()

        await self.storage.run(work)

    async def failed(self, update_id: int) -> bool:
        """Count a failed attempt; True when the update will be tried again, False when given up.

        A given-up update is marked failed and its payload dropped.
        """

        def work(s: Session) -> bool:
            row = self._row(s, update_id)
            if row is None or row.status != "received":
                return False
            row.attempts += 1
            if row.attempts >= self.policy.attempts:
                row.status, row.payload, row.done_at = "failed", None, utcnow()
                row.next_attempt_at = None
            else:
                delay = timedelta(seconds=self.policy.delay_s(row.attempts))
                row.next_attempt_at = utcnow() + delay
            s.add(row)
            s.commit()
            return row.status == "received"

        return await self.storage.run(work)

    async def due(
        self, now: datetime | None = None, quiet_s: float = 0.0
    ) -> list[tuple[int, dict[str, Any]]]:
        """Updates to (re)try now, oldest first: kept but unfinished, past their retry time.

        An update never tried is due once it has waited `quiet_s` (long enough that it is
        not one still being handled).
        """
        return await self._received(_due(now or utcnow(), quiet_s))

    async def due_chats(self, now: datetime | None = None, quiet_s: float = 0.0) -> list[str]:
        """The chats with kept updates due now (as `due`), oldest update first."""
        due = _due(now or utcnow(), quiet_s)

        def work(s: Session) -> list[str]:
            rows = s.exec(
                select(ChannelUpdate.chat_id, ChannelUpdate.update_id)
                .where(
                    ChannelUpdate.channel == self.channel,
                    ChannelUpdate.status == "received",
                    col(ChannelUpdate.chat_id).is_not(None),
                    due,
                )
                .order_by(col(ChannelUpdate.update_id))
            ).all()
            return list(dict.fromkeys(str(chat) for chat, _ in rows))

        return await self.storage.run(work)

    async def unfinished(self) -> list[tuple[int, dict[str, Any]]]:
        """Every update received but not yet handled (a crash or restart), oldest first."""
        return await self._received(true())

    async def _received(self, condition: Any) -> list[tuple[int, dict[str, Any]]]:
        def work(s: Session) -> list[tuple[int, dict[str, Any]]]:
            rows = s.exec(
                select(ChannelUpdate)
                .where(
                    ChannelUpdate.channel == self.channel,
                    ChannelUpdate.status == "received",
                    condition,
                )
                .order_by(col(ChannelUpdate.update_id))
            ).all()
            return [(r.update_id, r.payload or {}) for r in rows]

        return await self.storage.run(work)

    # --- one worker per chat at a time (several processes behind a webhook) -----------------

    async def take_chat(self, chat_id: str, holder: str, lease_s: float) -> bool:
        """Hold the chat for `holder` for `lease_s` (or renew it); False while another holds it.

        One statement (INSERT ... ON CONFLICT DO UPDATE ... WHERE), so two workers asking at
        once cannot both win, on PostgreSQL or SQLite. PostgreSQL judges expiry by its own
        clock, not the workers' (hosts whose clocks differ would take each other's chats).
        """

        def work(s: Session) -> bool:
            table = ChatLease.__table__  # type: ignore[attr-defined]
            if s.get_bind().dialect.name == "postgresql":
                dialect: Any = postgresql
                now: Any = func.now()
                until: Any = now + func.make_interval(0, 0, 0, 0, 0, 0, lease_s)
            else:  # SQLite: one host, one clock
                dialect = sqlite
                now = utcnow()
                until = now + timedelta(seconds=lease_s)
            statement = (
                dialect.insert(table)
                .values(channel=self.channel, chat_id=chat_id, holder=holder, until=until)
                .on_conflict_do_update(
                    index_elements=["channel", "chat_id"],
                    set_={"holder": holder, "until": until},
                    where=(table.c.until < now) | (table.c.holder == holder),
                )
                .returning(table.c.holder)  # a row back: inserted or taken over (rowcount
                # is -1 on PostgreSQL for an INSERT that SQLAlchemy adds a RETURNING to)
            )
            taken = s.execute(statement).first() is not None
            s.commit()
            return taken

        return await self.storage.run(work)

    async def free_chat(self, chat_id: str, holder: str) -> None:
        """Let the chat go (only if `holder` still holds it)."""

        def work(s: Session) -> None:
            s.execute(
                delete(ChatLease).where(
                    col(ChatLease.channel) == self.channel,
                    col(ChatLease.chat_id) == chat_id,
                    col(ChatLease.holder) == holder,
                )
            )
            s.commit()

        await self.storage.run(work)

    async def next_of_chat(
        self, chat_id: str, now: datetime | None = None
    ) -> tuple[int, dict[str, Any]] | None:
        """The chat's oldest kept update that is due (never tried, or past its retry time)."""
        now = now or utcnow()

        def work(s: Session) -> tuple[int, dict[str, Any]] | None:
            row = s.exec(
                select(ChannelUpdate)
                .where(
                    ChannelUpdate.channel == self.channel,
                    ChannelUpdate.chat_id == chat_id,
                    ChannelUpdate.status == "received",
                    or_(
                        col(ChannelUpdate.next_attempt_at).is_(None),
                        col(ChannelUpdate.next_attempt_at) <= now,
                    ),
                )
                .order_by(col(ChannelUpdate.update_id))
                .limit(1)
            ).first()
            return (row.update_id, row.payload or {}) if row is not None else None

        return await self.storage.run(work)
