"""Channel updates kept from arrival until handled: nothing lost on a crash, none twice."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bot.models import utcnow
from bot.storage.repository import Storage
from bot.storage.tables import ChannelUpdate


class UpdateInbox:
    """The updates of one channel, by the platform's update id."""

    def __init__(self, storage: Storage, channel: str) -> None:
        self.storage, self.channel = storage, channel

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

    async def finish(self, update_id: int, status: str = "done") -> None:
        """Mark an update handled and drop its payload (it holds patient text)."""

        def work(s: Session) -> None:
            row = s.exec(
                select(ChannelUpdate).where(
                    ChannelUpdate.channel == self.channel, ChannelUpdate.update_id == update_id
                )
            ).first()
            if row is not None:
                row.status, row.payload, row.done_at = status, None, utcnow()
                s.add(row)
                s.commit()

        await self.storage.run(work)

    async def unfinished(self) -> list[tuple[int, dict[str, Any]]]:
        """Return updates received but not handled (a crash or restart), oldest first."""

        def work(s: Session) -> list[tuple[int, dict[str, Any]]]:
            rows = s.exec(
                select(ChannelUpdate)
                .where(
                    ChannelUpdate.channel == self.channel,
                    ChannelUpdate.status == "received",
                )
                .order_by(col(ChannelUpdate.update_id))
            ).all()
            return [(r.update_id, r.payload or {}) for r in rows]

        return await self.storage.run(work)
