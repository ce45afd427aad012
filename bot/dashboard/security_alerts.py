"""Administrators are told of security events as they happen, not only when they open the
security page: break-glass, take-overs, Telegram links, second-factor changes, resets, role
changes and locks (ADMIN_ALERTS), pushed to every enabled administrator linked to Telegram.

The feed is read from the audit log, after a cursor kept in the database, so events written
by any process (the CLI's resets included) are sent, a restart neither repeats nor skips
them, and the first start begins at the present instead of replaying history. A message says
what happened to which account or case, by whom and when; never the details (a break-glass
reason may quote a patient). The channel is a function `send(chat_id, text)`: the Telegram
bot today, anything with a chat id tomorrow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlmodel import Session, col, func, select

from bot.dashboard.accounts import ADMIN_ALERTS
from bot.dashboard.roles import ADMINS
from bot.errors import StorageUnavailable
from bot.storage.repository import Storage
from bot.storage.tables import AuditEvent, DeliveryCursor, StaffUser

logger = logging.getLogger(__name__)
CURSOR = "admin_security_alerts"
BATCH = 50
Send = Callable[[int, str], Awaitable[object]]

WHAT = {
    "staff.password_changed": "password changed",  # pragma: allowlist secret
    "staff.password_reset": "password reset by an administrator",  # pragma: allowlist secret
    "staff.2fa_enabled": "two-step sign-in turned on",
    "staff.2fa_disabled": "two-step sign-in turned off",
    "staff.2fa_reset": "two-step sign-in reset by an administrator",
    "staff.recovery_codes_made": "new recovery codes made",
    "staff.recovery_code_used": "a recovery code used to sign in",
    "staff.telegram_code": "a Telegram link code made",
    "staff.telegram_linked": "a Telegram account linked",
    "staff.telegram_unlinked": "the Telegram link ended",
    "staff.locked": "locked after wrong passwords or codes",
    "staff.enabled": "account enabled",
    "staff.disabled": "account disabled",
    "staff.role_changed": "role changed",
    "case.break_glass": "break-glass: a closed case opened",
    "escalation.taken_over": "a case taken over from its doctor",
}


@dataclass(frozen=True)
class Alert:
    """One event as administrators are told of it."""

    event_id: int
    text: str


class SecurityAlerts:
    """The administrators' security feed."""

    def __init__(self, storage: Storage, dashboard_url: str | None = None) -> None:
        self.storage, self.dashboard_url = storage, dashboard_url

    async def pending(self) -> list[Alert]:
        """Security events not yet sent, oldest first (the first call starts the feed now)."""

        def work(s: Session) -> list[Alert]:
            cursor = s.exec(select(DeliveryCursor).where(DeliveryCursor.name == CURSOR)).first()
            if cursor is None:
                newest = s.exec(select(func.max(AuditEvent.id))).one() or 0
                s.add(DeliveryCursor(name=CURSOR, position=newest))
                s.commit()
                return []
            events = s.exec(
                select(AuditEvent)
                .where(
                    col(AuditEvent.id) > cursor.position, col(AuditEvent.action).in_(ADMIN_ALERTS)
                )
                .order_by(col(AuditEvent.id))
                .limit(BATCH)
            ).all()
            names = {
                f"staff:{u.id}": f"{u.username} ({u.display_name})"
                for u in s.exec(select(StaffUser)).all()
            }
            return [Alert(e.id, self._text(e, names)) for e in events if e.id is not None]

        return await self.storage.run(work)

    def _text(self, e: AuditEvent, names: dict[str, str]) -> str:
        what = WHAT.get(e.action, e.action)
        if e.subject_type == "staff_user":
            subject = f"account {names.get(f'staff:{e.subject_id}', e.subject_id)}"
        else:
            subject = f"case {e.subject_id}"
        actor = names.get(e.actor, e.actor)
        where = (
            f"{self.dashboard_url.rstrip('/')}/dashboard/security"
            if self.dashboard_url
            else ("the dashboard's security page")
        )
        return (
            f"🔐 CareBot security: {what}\n"
            f"{subject}, by {actor}, {e.at:%Y-%m-%d %H:%M} UTC.\n"
            f"If this was not expected, look at {where}."
        )

    async def recipients(self) -> list[int]:
        """Telegram accounts of enabled administrators."""

        def work(s: Session) -> list[int]:
            rows = s.exec(
                select(StaffUser.telegram_user_id).where(
                    col(StaffUser.role).in_([r.value for r in ADMINS]),
                    col(StaffUser.disabled).is_(False),
                    col(StaffUser.telegram_user_id).is_not(None),
                )
            ).all()
            return [int(r) for r in rows if r is not None]

        return await self.storage.run(work)

    async def delivered(self, event_id: int) -> None:
        def work(s: Session) -> None:
            cursor = s.exec(select(DeliveryCursor).where(DeliveryCursor.name == CURSOR)).first()
            if cursor is not None and cursor.position < event_id:
                cursor.position = event_id
                s.add(cursor)
                s.commit()

        await self.storage.run(work)

    async def push(self, send: Send) -> int:
        """Send what is pending to every administrator; return how many events went.

        An event counts as sent when one administrator got it (one who blocked the bot must
        not hold the feed up for the others); with nobody reached it waits for the next try.
        """
        alerts = await self.pending()
        if not alerts:
            return 0
        chats = await self.recipients()
        sent = 0
        for alert in alerts:
            reached = 0
            for chat in chats:
                try:
                    await send(chat, alert.text)
                    reached += 1
                except Exception as exc:  # a blocked bot, a network error: logged, retried
                    logger.warning(
                        "security alert %d not delivered to an administrator: %s",
                        alert.event_id,
                        type(exc).__name__,
                    )
            if chats and not reached:
                break
            await self.delivered(alert.event_id)
            sent += 1
        return sent

    async def run(
        self, send: Send, every_s: float, stop: asyncio.Event, leading: asyncio.Event
    ) -> None:
        """Push now and every `every_s` until `stop` is set, while this process leads the
        timers (bot/leader.py: one process of several sends). Never raises. Stopping waits
        for the push under way: cut between a send and its cursor, an alert would go twice."""
        while not stop.is_set():
            try:
                if leading.is_set():
                    await self.push(send)
            except StorageUnavailable:
                logger.warning("security alerts: the database is unavailable; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
