"""Staff accounts: create, list, disable, and sign in with a lockout after repeated failures."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from bot.cases.models import Actor, AuditLine
from bot.cases.store import aware
from bot.dashboard.errors import DuplicateAccount, InvalidAccount, UnknownAccount
from bot.dashboard.passwords import Passwords
from bot.dashboard.roles import CLINICIANS, PROMPT_EDITORS, Role
from bot.models import utcnow
from bot.prompt_approvals import Reviewer
from bot.storage.repository import Storage, audit_event
from bot.storage.tables import AuditEvent, StaffUser
from bot.workers import PASSWORDS

logger = logging.getLogger(__name__)
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")


class StaffAccount(BaseModel):
    """A staff member as the dashboard sees them (no password hash)."""

    id: int
    username: str
    display_name: str
    role: Role
    telegram_user_id: int | None
    disabled: bool
    locked_until: datetime | None
    two_factor: bool = False  # a confirmed TOTP secret: sign-in asks for a code too

    @property
    def label(self) -> str:
        """How the account appears in the audit log."""
        return f"staff:{self.id}"

    @property
    def reads_cases(self) -> bool:
        """Operators cannot read transcripts unless they are also doctors."""
        return self.role in CLINICIANS

    @property
    def edits_prompts(self) -> bool:
        """Operators and admins use the prompt console; doctors do not."""
        return self.role in PROMPT_EDITORS

    @property
    def approves_safety_texts(self) -> bool:
        """Clinicians and admins approve changes to safety-critical texts (four eyes)."""
        return self.role in CLINICIANS

    def reviewer(self) -> Reviewer:
        """The account deciding on a change to a safety-critical text."""
        return Reviewer(name=self.author, key=self.label, approves=self.approves_safety_texts)

    @property
    def author(self) -> str:
        """How the account signs prompt versions and drafts: its name and its audit label."""
        return f"{self.display_name[:100]} ({self.label})"  # the column holds 128 characters

    def actor(self) -> Actor:
        """The account acting on a case."""
        return Actor(
            name=self.display_name,
            role=self.role.value,
            staff_id=self.id,
            telegram_id=self.telegram_user_id,
        )


class LoginFailure(StrEnum):
    """Why a sign-in was refused."""

    WRONG = "wrong"  # unknown username or wrong password: the page does not say which
    LOCKED = "locked"
    DISABLED = "disabled"


@dataclass(frozen=True)
class LoginResult:
    """The account that signed in, or why nobody did."""

    account: StaffAccount | None
    failure: LoginFailure | None = None
    locked_until: datetime | None = None


# What an account's owner is shown (and told about at their next sign-in): changes to how the
# account is reached, whoever made them.
SECURITY_ACTIONS = frozenset(
    {
        "staff.password_changed",
        "staff.password_reset",
        "staff.2fa_enabled",
        "staff.2fa_disabled",
        "staff.2fa_reset",
        "staff.recovery_codes_made",
        "staff.recovery_code_used",
        "staff.telegram_code",
        "staff.telegram_linked",
        "staff.telegram_unlinked",
        "staff.locked",
        "staff.enabled",
        "staff.disabled",
        "staff.role_changed",
    }
)


# What administrators are shown on their security page (and counted in its tab): every
# owner-facing security change, plus the acts on cases that bypass the usual path.
ADMIN_ALERTS = SECURITY_ACTIONS | {"case.break_glass", "escalation.taken_over"}


@dataclass(frozen=True)
class LockoutPolicy:
    """Lock an account for `lockout_s` after `max_failures` wrong passwords in a row, from
    anywhere (bot/dashboard/login_throttle.py limits each address long before that)."""

    max_failures: int = 50
    lockout_s: float = 900.0


def account_from_row(row: StaffUser) -> StaffAccount:
    """The dashboard's view of a stored account."""
    assert row.id is not None
    return StaffAccount(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        role=Role(row.role),
        telegram_user_id=row.telegram_user_id,
        disabled=row.disabled,
        locked_until=aware(row.locked_until),
        two_factor=row.totp_secret is not None,
    )


@dataclass(frozen=True)
class _LoginView:
    """What a sign-in reads before checking the password (outside any database call)."""

    id: int
    password_hash: str
    locked_until: datetime | None


def _login_view(s: Session, name: str) -> _LoginView | None:
    row = s.exec(select(StaffUser).where(StaffUser.username == name)).first()
    if row is None or row.id is None:
        return None
    return _LoginView(row.id, row.password_hash, aware(row.locked_until))


def row_named(s: Session, username: str) -> StaffUser:
    """The account row called `username` (normalised); raise UnknownAccount."""
    name = normalize_username(username)
    row = s.exec(select(StaffUser).where(StaffUser.username == name)).first()
    if row is None or row.id is None:
        raise UnknownAccount(f"no user named {name!r}")
    return row


def _audited(s: Session, actor: str, action: str, staff_id: int) -> None:
    s.add(audit_event(actor, action, "staff_user", str(staff_id)))
    s.commit()


def normalize_username(username: str) -> str:
    """Return the stored form of a username (lower case); refuse odd ones."""
    name = username.strip().lower()
    if not USERNAME.fullmatch(name):
        raise InvalidAccount(
            f"username {username!r}: use 2-64 letters, digits, '.', '_', '-' or '@'"
        )
    return name


class StaffAccounts:
    """Create, find and sign in staff accounts; every change is audited."""

    def __init__(
        self,
        storage: Storage,
        passwords: Passwords | None = None,
        policy: LockoutPolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.storage = storage
        self.passwords = passwords or Passwords()
        self.policy = policy or LockoutPolicy()
        self.clock = clock

    async def add(
        self,
        username: str,
        display_name: str,
        role: Role,
        password: str,
        telegram_user_id: int | None = None,
        by: str = "cli",
    ) -> StaffAccount:
        """Create an account; raise DuplicateAccount or InvalidAccount."""
        name = normalize_username(username)
        display = display_name.strip()
        if not 1 <= len(display) <= 128:
            raise InvalidAccount("the display name needs 1-128 characters")
        hashed = await PASSWORDS.run(self.passwords.hash, password, (name, display))

        def work(s: Session) -> StaffAccount:
            if s.exec(select(StaffUser).where(StaffUser.username == name)).first():
                raise DuplicateAccount(f"a user named {name!r} already exists")
            if (
                telegram_user_id is not None
                and s.exec(
                    select(StaffUser).where(StaffUser.telegram_user_id == telegram_user_id)
                ).first()
            ):
                raise DuplicateAccount(f"Telegram id {telegram_user_id} belongs to another user")
            row = StaffUser(
                username=name,
                display_name=display,
                role=Role(role).value,
                password_hash=hashed,
                telegram_user_id=telegram_user_id,
            )
            s.add(row)
            try:
                s.flush()
            except IntegrityError as exc:  # a concurrent add of the same name
                raise DuplicateAccount(f"a user named {name!r} already exists") from exc
            assert row.id is not None
            s.add(audit_event(by, "staff.created", "staff_user", str(row.id), role=row.role))
            s.commit()
            return account_from_row(row)

        account = await self.storage.run(work)
        logger.info("staff account %s created (%s)", account.id, account.role.value)
        return account

    async def all(self) -> list[StaffAccount]:
        """Every account, by username."""

        def work(s: Session) -> list[StaffAccount]:
            rows = s.exec(select(StaffUser).order_by(col(StaffUser.username))).all()
            return [account_from_row(r) for r in rows]

        return await self.storage.run(work)

    async def set_role(self, username: str, role: Role, by: str = "cli") -> StaffAccount:
        """Give an account another role (audited with the old and new); raise UnknownAccount."""

        def work(s: Session) -> StaffAccount:
            row = row_named(s, username)
            if row.role != role.value:
                before, row.role = row.role, role.value
                s.add(row)
                s.add(
                    audit_event(
                        by,
                        "staff.role_changed",
                        "staff_user",
                        str(row.id),
                        old=before,
                        new=role.value,
                    )
                )
                s.commit()
            return account_from_row(row)

        return await self.storage.run(work)

    async def last_sign_ins(self) -> dict[int, datetime]:
        """When each account last signed in (for an access review)."""

        def work(s: Session) -> dict[int, datetime]:
            rows = s.exec(
                select(AuditEvent.subject_id, func.max(AuditEvent.at))
                .where(
                    AuditEvent.subject_type == "staff_user",
                    col(AuditEvent.action).in_(("staff.login", "staff.login_2fa")),
                )
                .group_by(col(AuditEvent.subject_id))
            ).all()
            return {int(sid): aware(at) or utcnow() for sid, at in rows if sid.isdigit()}

        return await self.storage.run(work)

    async def disable(self, username: str, by: str = "cli") -> StaffAccount:
        """Stop an account from signing in; raise UnknownAccount."""

        def work(s: Session) -> StaffAccount:
            row = row_named(s, username)
            if not row.disabled:
                row.disabled = True
                s.add(row)
                s.add(audit_event(by, "staff.disabled", "staff_user", str(row.id)))
                s.commit()
            return account_from_row(row)

        return await self.storage.run(work)

    async def named(self, username: str) -> StaffAccount:
        """The account called `username`; raise UnknownAccount."""

        def work(s: Session) -> StaffAccount:
            row = row_named(s, username)
            return account_from_row(row)

        return await self.storage.run(work)

    async def enable(self, username: str, by: str = "cli") -> StaffAccount:
        """Let a disabled account sign in again and lift any lock; raise UnknownAccount."""

        def work(s: Session) -> StaffAccount:
            row = row_named(s, username)
            row.disabled, row.failed_logins, row.locked_until = False, 0, None
            s.add(row)
            s.add(audit_event(by, "staff.enabled", "staff_user", str(row.id)))
            s.commit()
            return account_from_row(row)

        return await self.storage.run(work)

    async def set_password(
        self, username: str, password: str, by: str, current: str | None = None
    ) -> StaffAccount:
        """Give an account a new password and lift any lock: its owner's change (`current`
        must be right) or an administrator's reset. Raises UnknownAccount or InvalidAccount;
        the caller ends the account's other sign-ins."""
        name = normalize_username(username)
        row = await self.storage.run(lambda s: _login_view(s, name))
        if row is None:
            raise UnknownAccount(f"no user named {name!r}")
        if current is not None and not await PASSWORDS.run(
            self.passwords.verify, row.password_hash, current
        ):
            await self.storage.run(
                lambda s: _audited(s, by, "staff.password_change_refused", row.id)
            )
            raise InvalidAccount("the current password is wrong")
        # Raises if too short or too easy to guess.
        hashed = await PASSWORDS.run(self.passwords.hash, password, (name,))

        def work(s: Session) -> StaffAccount:
            user = s.get(StaffUser, row.id)
            if user is None:
                raise UnknownAccount(f"no user named {name!r}")
            user.password_hash, user.failed_logins, user.locked_until = hashed, 0, None
            s.add(user)
            action = "staff.password_changed" if current is not None else "staff.password_reset"
            _audited(s, by, action, row.id)
            return account_from_row(user)

        account = await self.storage.run(work)
        logger.info("staff account %s: password %s", account.id, "changed" if current else "reset")
        return account

    async def security_events(
        self, account: StaffAccount, since: datetime | None = None, limit: int = 20
    ) -> list[AuditLine]:
        """The account's recent security events, newest first (those after `since` only)."""

        def work(s: Session) -> list[AuditLine]:
            query = select(AuditEvent).where(
                AuditEvent.subject_type == "staff_user",
                AuditEvent.subject_id == str(account.id),
                col(AuditEvent.action).in_(SECURITY_ACTIONS),
            )
            if since is not None:
                query = query.where(col(AuditEvent.at) > since)
            rows = s.exec(query.order_by(col(AuditEvent.id).desc()).limit(limit)).all()
            return [
                AuditLine(at=aware(e.at) or utcnow(), actor=e.actor, action=e.action, details={})
                for e in rows
            ]

        return await self.storage.run(work)

    async def security_log(
        self, since: datetime | None = None, limit: int = 200
    ) -> list[AuditLine]:
        """Security events across every account and case, newest first, for administrators:
        changes to how accounts are reached, and break-glass and take-overs on cases."""

        def work(s: Session) -> list[AuditLine]:
            query = select(AuditEvent).where(col(AuditEvent.action).in_(ADMIN_ALERTS))
            if since is not None:
                query = query.where(col(AuditEvent.at) > since)
            rows = s.exec(query.order_by(col(AuditEvent.id).desc()).limit(limit)).all()
            return [
                AuditLine(
                    at=aware(e.at) or utcnow(),
                    actor=e.actor,
                    action=e.action,
                    details={"subject": f"{e.subject_type} {e.subject_id}"},
                )
                for e in rows
            ]

        return await self.storage.run(work)

    async def previous_sign_in(self, account: StaffAccount) -> datetime | None:
        """When the account last signed in before the sign-in just recorded."""

        def work(s: Session) -> datetime | None:
            rows = s.exec(
                select(AuditEvent.at)
                .where(
                    AuditEvent.subject_type == "staff_user",
                    AuditEvent.subject_id == str(account.id),
                    col(AuditEvent.action).in_(("staff.login", "staff.login_2fa")),
                )
                .order_by(col(AuditEvent.id).desc())
                .limit(3)
            ).all()
            # A sign-in with two-step records two events (password, then code).
            times = [aware(t) for t in rows]
            cutoff = 1 if account.two_factor else 0
            earlier = times[cutoff + 1 :] if len(times) > cutoff + 1 else []
            return earlier[0] if earlier else None

        return await self.storage.run(work)

    async def id_of(self, username: str) -> int | None:
        """The id of the account called `username`, if there is one."""
        name = username.strip().lower()
        row = await self.storage.run(lambda s: _login_view(s, name))
        return row.id if row is not None else None

    async def authenticate(
        self,
        username: str,
        password: str,
        client: str = "",
        purpose: str = "login",
        known_device: bool = False,
    ) -> LoginResult:
        """Check a username and password, counting failures and locking after too many.

        Three steps, so the slow argon2 check never runs inside a database call (SQLite has
        one storage thread, shared with every patient's message): read the account, check
        the password on the password pool, then record the outcome. The record is atomic:
        parallel guesses each count (`failed_logins + 1` in SQL), and a lock taken by one of
        them refuses a right password checked at the same moment.
        """
        name = username.strip().lower()
        now = self.clock()
        row = await self.storage.run(lambda s: _login_view(s, name))
        locked = row is not None and row.locked_until is not None and row.locked_until > now
        if row is None or (locked and not known_device):
            # The typed name is not recorded: people type passwords into it by mistake.
            await PASSWORDS.run(self.passwords.decoy, password)
            right = False
        else:
            right = await PASSWORDS.run(self.passwords.verify, row.password_hash, password)
        rehashed = None
        if row is not None and right and self.passwords.needs_rehash(row.password_hash):
            # Stronger parameters for the same password: not a new password to judge.
            rehashed = await PASSWORDS.run(self.passwords.hasher.hash, password)
        result = await self.storage.run(
            lambda s: self._record_login(
                s, row, right, rehashed, now, client, purpose, known_device
            )
        )
        if result.account is not None:
            logger.info("staff account %s signed in", result.account.id)
        else:
            logger.info("a dashboard sign-in was refused (%s)", result.failure)
        return result

    def _record_login(
        self,
        s: Session,
        view: _LoginView | None,
        right: bool,
        rehashed: str | None,
        now: datetime,
        client: str,
        purpose: str,
        known_device: bool = False,
    ) -> LoginResult:
        def refuse(subject: str, reason: str, **details: object) -> None:
            actor = f"staff:{subject}" if subject != "unknown" else "anonymous"
            s.add(
                audit_event(
                    actor,
                    "staff.login_failed",
                    "staff_user",
                    subject,
                    reason=reason,
                    client=client,
                    **details,
                )
            )
            s.commit()

        if view is None:
            refuse("unknown", "unknown_user")
            return LoginResult(None, LoginFailure.WRONG)
        subject = str(view.id)
        # A known device's wrong passwords are counted on the device (LoginThrottle), not
        # towards the account's lock, and the lock does not keep it out.
        if not right and not known_device:
            # The write comes first: it takes SQLite's write lock (PostgreSQL's row lock)
            # before the count is read, so two wrong guesses at once both count.
            s.exec(
                update(StaffUser)
                .where(col(StaffUser.id) == view.id)
                .values(failed_logins=col(StaffUser.failed_logins) + 1)
            )
        row = s.get(StaffUser, view.id)
        if row is None:  # deleted meanwhile
            refuse("unknown", "unknown_user")
            return LoginResult(None, LoginFailure.WRONG)
        locked_until = aware(row.locked_until)
        if locked_until is not None and locked_until > now and not known_device:
            if not right:  # a guess against a locked account does not count towards a new lock
                row.failed_logins -= 1
                s.add(row)
            refuse(subject, "locked")
            return LoginResult(None, LoginFailure.LOCKED, locked_until)
        if row.disabled:
            refuse(subject, "disabled")
            return LoginResult(None, LoginFailure.DISABLED if right else LoginFailure.WRONG)
        if not right and known_device:
            refuse(subject, "wrong_password", known_device=True)
            return LoginResult(None, LoginFailure.WRONG)
        if not right:
            return self._count_failure(s, row, now, refuse)
        if not known_device:
            row.locked_until = None
        if row.totp_secret is None:
            # With two-step sign-in the count goes on until the code is right too: a thief
            # who has the password cannot reset it between guesses at the code.
            row.failed_logins = 0
        if rehashed is not None and row.password_hash == view.password_hash:
            row.password_hash = rehashed
        s.add(row)
        s.add(
            audit_event(
                f"staff:{subject}", f"staff.{purpose}", "staff_user", subject, client=client
            )
        )
        s.commit()
        return LoginResult(account_from_row(row))

    def _count_failure(
        self,
        s: Session,
        row: StaffUser,
        now: datetime,
        refuse: Callable[..., None],
    ) -> LoginResult:
        failures = row.failed_logins
        if not lock_if_over(s, row, now, self.policy):
            refuse(str(row.id), "wrong_password", failures=failures)
            return LoginResult(None, LoginFailure.WRONG)
        refuse(str(row.id), "wrong_password", failures=failures)
        return LoginResult(None, LoginFailure.LOCKED, aware(row.locked_until))


def lock_if_over(s: Session, row: StaffUser, now: datetime, policy: LockoutPolicy) -> bool:
    """Lock the account once its failures in a row (wrong passwords and wrong codes alike)
    reach the policy's limit; True if it was locked now. The caller commits."""
    failures = row.failed_logins
    if failures < policy.max_failures:
        return False
    # Locked: the count starts again when the lock runs out.
    row.failed_logins = 0
    row.locked_until = now + timedelta(seconds=policy.lockout_s)
    s.add(row)
    s.add(
        audit_event(
            "carebot",
            "staff.locked",
            "staff_user",
            str(row.id),
            until=row.locked_until.isoformat(),
            failures=failures,
        )
    )
    logger.warning("staff account %s locked after %d failed sign-ins", row.id, failures)
    return True
