"""Dashboard sign-ins: a random token in a cookie, its hash and CSRF token in the database."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import Response
from sqlmodel import Session, col, delete, select

from bot.cases.store import aware
from bot.dashboard.accounts import StaffAccount, account_from_row
from bot.models import utcnow
from bot.storage.repository import Storage, audit_event
from bot.storage.tables import StaffSession, StaffUser

logger = logging.getLogger(__name__)
COOKIE = "carebot_session"
COOKIE_PATH = "/dashboard"
CHALLENGE_COOKIE = "carebot_login_challenge"  # a right password waiting for its code
CHALLENGE_PATH = "/dashboard/login"
TOUCH_EVERY = timedelta(seconds=60)  # write last_seen_at at most once a minute per session


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SignedIn:
    """A staff member signed in to the dashboard, with the CSRF token of their forms."""

    session_id: int
    account: StaffAccount
    csrf_token: str


@dataclass(frozen=True)
class OpenSignIn:
    """One of an account's live sign-ins, as its owner sees it."""

    id: int
    started: datetime
    last_seen: datetime


class LoginSessions:
    """Start, look up and end sign-ins; a sign-in ends after `idle_s` without the person
    acting, and `max_s` after it began whatever they do."""

    def __init__(
        self,
        storage: Storage,
        idle_s: float,
        max_s: float = 12 * 3600,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.storage, self.idle = storage, timedelta(seconds=idle_s)
        self.lifetime = timedelta(seconds=max_s)
        self.clock = clock

    async def start(self, account: StaffAccount) -> str:
        """Open a sign-in for `account`; return the token for the browser's cookie."""
        token = secrets.token_urlsafe(32)

        def work(s: Session) -> None:
            now = self.clock()
            # Sign-ins left idle or past their lifetime are swept here rather than by a timer.
            s.execute(
                delete(StaffSession).where(
                    (col(StaffSession.last_seen_at) < now - self.idle)
                    | (col(StaffSession.created_at) < now - self.lifetime)
                )
            )
            s.add(
                StaffSession(
                    token_hash=_digest(token),
                    staff_id=account.id,
                    csrf_token=secrets.token_urlsafe(32),
                    created_at=now,
                    last_seen_at=now,
                )
            )
            s.commit()

        await self.storage.run(work)
        return token

    async def resolve(self, token: str, touch: bool = True) -> SignedIn | None:
        """Return who holds `token`, or None when it is unknown, idle too long, past its
        lifetime or disabled; `touch` False for requests the person did not make (a page
        refreshing itself, a live stream), which do not keep the sign-in alive."""

        def work(s: Session) -> SignedIn | None:
            row = s.exec(
                select(StaffSession).where(StaffSession.token_hash == _digest(token))
            ).first()
            if row is None or row.id is None:
                return None
            user = s.get(StaffUser, row.staff_id)
            now = self.clock()
            last_seen = aware(row.last_seen_at) or now
            began = aware(row.created_at) or now
            if (
                user is None
                or user.disabled
                or now - last_seen > self.idle
                or now - began > self.lifetime
            ):
                s.delete(row)
                s.commit()
                return None
            if touch and now - last_seen > TOUCH_EVERY:
                row.last_seen_at = now
                s.add(row)
                s.commit()
            return SignedIn(row.id, account_from_row(user), row.csrf_token)

        return await self.storage.run(work)

    async def end(self, signed_in: SignedIn) -> None:
        """Sign out: the token stops working at once."""
        label = signed_in.account.label

        def work(s: Session) -> None:
            s.execute(delete(StaffSession).where(col(StaffSession.id) == signed_in.session_id))
            s.add(audit_event(label, "staff.logout", "staff_user", str(signed_in.account.id)))
            s.commit()

        await self.storage.run(work)
        logger.info("staff account %s signed out", signed_in.account.id)

    async def of_account(self, staff_id: int) -> list[OpenSignIn]:
        """The account's live sign-ins, newest activity first (for its owner to review)."""

        def work(s: Session) -> list[OpenSignIn]:
            rows = s.exec(
                select(StaffSession)
                .where(StaffSession.staff_id == staff_id)
                .order_by(col(StaffSession.last_seen_at).desc())
            ).all()
            now = self.clock()
            return [
                OpenSignIn(
                    id=r.id,
                    started=aware(r.created_at) or now,
                    last_seen=aware(r.last_seen_at) or now,
                )
                for r in rows
                if r.id is not None and self._alive(r, now)
            ]

        return await self.storage.run(work)

    def _alive(self, row: StaffSession, now: datetime) -> bool:
        last = aware(row.last_seen_at) or now
        began = aware(row.created_at) or now
        return now - last <= self.idle and now - began <= self.lifetime

    async def end_one(self, signed_in: SignedIn, session_id: int) -> bool:
        """The owner ends one of their other sign-ins (a browser left open elsewhere)."""
        account = signed_in.account

        def work(s: Session) -> bool:
            gone = s.execute(
                delete(StaffSession).where(
                    col(StaffSession.id) == session_id, col(StaffSession.staff_id) == account.id
                )
            ).rowcount  # type: ignore[attr-defined]
            if gone:
                s.add(
                    audit_event(
                        account.label,
                        "staff.session_ended",
                        "staff_user",
                        str(account.id),
                        session=session_id,
                    )
                )
            s.commit()
            return bool(gone)

        return await self.storage.run(work)

    async def end_all(self, staff_id: int, keep: int | None = None) -> int:
        """End every sign-in of an account (disabled, or its password changed), but
        `keep`; return how many."""

        def work(s: Session) -> int:
            query = delete(StaffSession).where(col(StaffSession.staff_id) == staff_id)
            if keep is not None:
                query = query.where(col(StaffSession.id) != keep)
            result = s.execute(query)
            s.commit()
            return int(result.rowcount)  # type: ignore[attr-defined]

        return await self.storage.run(work)


def set_session_cookie(response: Response, token: str, secure: bool) -> None:
    """Give the browser its sign-in token: script cannot read it; other sites' links may
    open a page with it (Lax: a doctor arriving from the Telegram alert stays signed in),
    but never post with it, and every form also needs its CSRF token."""
    response.set_cookie(
        COOKIE, token, path=COOKIE_PATH, httponly=True, samesite="lax", secure=secure
    )


def clear_session_cookie(response: Response, secure: bool) -> None:
    """Make the browser forget its sign-in token."""
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=secure)


def set_challenge_cookie(response: Response, token: str, secure: bool) -> None:
    """Hold the second sign-in step's token, sent back only to the login pages."""
    response.set_cookie(
        CHALLENGE_COOKIE,
        token,
        path=CHALLENGE_PATH,
        httponly=True,
        samesite="strict",
        secure=secure,
        max_age=300,
    )


def clear_challenge_cookie(response: Response, secure: bool) -> None:
    """Forget the second step's token (passed, or over)."""
    response.delete_cookie(
        CHALLENGE_COOKIE, path=CHALLENGE_PATH, httponly=True, samesite="strict", secure=secure
    )
