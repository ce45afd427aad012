"""Staff identity on Telegram: a staff account is linked to one Telegram account by a one-time
code, and only linked, enabled clinicians' accounts act on cases there.

Being in the doctors' group proves nothing (anyone added to it, or a doctor's phone in
someone else's hands, could claim cases and write to patients under any display name). A
clinician creates a code in the dashboard (signed in, so the account is theirs) and sends
`/link CODE` to the bot in a private chat: that Telegram account is now the staff account's.
Every Telegram action looks the account up again, so disabling an account, or unlinking it,
ends its Telegram powers at once. Patients see the account's display name and role, never
the Telegram name.

Codes: 8 characters from a 31-letter alphabet (about 40 bits), stored as SHA-256, valid for
10 minutes and once; a new code replaces the previous one. Guessing is bounded by the
per-chat message limit on top of that.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, select

from bot.cases.models import Actor
from bot.cases.store import aware
from bot.dashboard.accounts import StaffAccount, account_from_row
from bot.dashboard.roles import CLINICIANS, Role
from bot.models import utcnow
from bot.storage.repository import Storage, audit_event
from bot.storage.tables import StaffUser

logger = logging.getLogger(__name__)
CODE_TTL = timedelta(minutes=10)
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read off a screen, typed on a phone
CODE_LENGTH = 8


class LinkRefused(Exception):
    """A link code that does not link (the message is for the person who sent it)."""


@dataclass(frozen=True)
class LinkCode:
    """A code to send to the bot, shown once."""

    code: str
    expires_at: datetime


def _digest(code: str) -> str:
    normal = "".join(ch for ch in code.upper() if ch in ALPHABET)
    return hashlib.sha256(normal.encode()).hexdigest()


class TelegramLinks:
    """Link codes, links, and who a Telegram user is for CareBot."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def new_code(self, account: StaffAccount) -> LinkCode:
        """A fresh one-time code for a clinician's account (the previous one stops working)."""
        if account.role not in CLINICIANS:
            raise LinkRefused("only doctors and admins act on cases in Telegram")
        raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
        expires = utcnow() + CODE_TTL

        def work(s: Session) -> None:
            row = s.get(StaffUser, account.id)
            if row is None or row.disabled:
                raise LinkRefused("this account is disabled")
            row.telegram_link_hash, row.telegram_link_expires_at = _digest(raw), expires
            s.add(row)
            s.add(audit_event(account.label, "staff.telegram_code", "staff_user", str(row.id)))
            s.commit()

        await self.storage.run(work)
        return LinkCode(code=f"{raw[:4]}-{raw[4:]}", expires_at=expires)

    async def link(self, code: str, telegram_id: int) -> StaffAccount:
        """Link the account whose live code this is to `telegram_id`; LinkRefused otherwise."""
        digest, now = _digest(code), utcnow()

        def work(s: Session) -> StaffAccount:
            row = s.exec(select(StaffUser).where(StaffUser.telegram_link_hash == digest)).first()
            expires = aware(row.telegram_link_expires_at) if row is not None else None
            if row is None or row.disabled or expires is None or expires < now:
                raise LinkRefused(
                    "This code is not valid or has expired. Create a new one in the dashboard "
                    "(Telegram page) and send it within 10 minutes."
                )
            other = s.exec(
                select(StaffUser).where(
                    StaffUser.telegram_user_id == telegram_id, StaffUser.id != row.id
                )
            ).first()
            if other is not None:
                raise LinkRefused(
                    "This Telegram account is linked to another staff account. Unlink it there "
                    "first (dashboard, Telegram page)."
                )
            row.telegram_user_id = telegram_id
            row.telegram_link_hash = row.telegram_link_expires_at = None
            s.add(row)
            s.add(
                audit_event(
                    f"staff:{row.id}",
                    "staff.telegram_linked",
                    "staff_user",
                    str(row.id),
                    telegram_id=telegram_id,
                )
            )
            s.commit()
            return account_from_row(row)

        account = await self.storage.run(work)
        logger.info("staff account %s linked to a Telegram account", account.id)
        return account

    async def unlink(self, account: StaffAccount, by: str) -> None:
        """Forget the account's Telegram link (and any code not yet used)."""

        def work(s: Session) -> None:
            row = s.get(StaffUser, account.id)
            if row is None:
                return
            row.telegram_user_id = None
            row.telegram_link_hash = row.telegram_link_expires_at = None
            s.add(row)
            s.add(audit_event(by, "staff.telegram_unlinked", "staff_user", str(row.id)))
            s.commit()

        await self.storage.run(work)

    async def actor(self, telegram_id: int) -> Actor | None:
        """The enabled clinician's account linked to this Telegram user, as it acts on cases;
        None for anyone else (an unlinked member of the group, a disabled account)."""

        def work(s: Session) -> Actor | None:
            row = s.exec(select(StaffUser).where(StaffUser.telegram_user_id == telegram_id)).first()
            if row is None or row.disabled or Role(row.role) not in CLINICIANS:
                return None
            return account_from_row(row).actor()

        return await self.storage.run(work)

    async def reachable(self, staff_id: int | None) -> int | None:
        """The Telegram user to relay a case's patient to: its holder's linked account, while
        the account is enabled."""
        if staff_id is None:
            return None

        def work(s: Session) -> int | None:
            row = s.get(StaffUser, staff_id)
            if row is None or row.disabled or Role(row.role) not in CLINICIANS:
                return None
            return row.telegram_user_id

        return await self.storage.run(work)
