"""The optional second factor of staff sign-in: time-based one-time codes (TOTP, RFC 6238)
from an authenticator app, computed by pyotp.

A staff member turns it on from their account page: CareBot makes a secret, shows it as a QR
code (segno) and as text, and keeps it only once a code from the app proves the app has it.
From then on a right password opens a challenge, not a sign-in: the browser holds the
challenge's token (the table only its SHA-256) and has five minutes and five tries to give a
code. Each code works once: the last time step used is stored and a code from that step or
an earlier one is refused, so a code read over a shoulder or from a proxy log is spent.

An administrator turns the second factor off for someone who lost their phone
(`carebot users reset-2fa`); the secret never leaves the database otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import pyotp
import segno
from sqlmodel import Session, col, delete, select, update

from bot.cases.store import aware
from bot.dashboard.accounts import (
    LockoutPolicy,
    StaffAccount,
    account_from_row,
    lock_if_over,
    row_named,
)
from bot.dashboard.errors import InvalidAccount, UnknownAccount
from bot.models import utcnow
from bot.storage.repository import Storage, audit_event
from bot.storage.tables import StaffLoginChallenge, StaffRecoveryCode, StaffUser

logger = logging.getLogger(__name__)
ISSUER = "CareBot"
STEP_S = 30  # what every authenticator app uses
DRIFT_STEPS = 1  # a phone's clock 30 s off, or a code typed as it changed, still works
CHALLENGE_TTL = timedelta(minutes=5)
CHALLENGE_TRIES = 5
RECOVERY_CODES = 10
# Recovery codes: 10 characters from the link codes' alphabet (about 50 bits), shown once.
RECOVERY_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # pragma: allowlist secret
RECOVERY_LENGTH = 10


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _clean(code: str) -> str | None:
    """The six digits a person typed, spaces and dashes aside; None for anything else."""
    digits = "".join(ch for ch in code if ch not in " -\t")
    return digits if len(digits) == 6 and digits.isascii() and digits.isdigit() else None


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code `code` is (this one or a neighbour), or None."""
    cleaned = _clean(code)
    if cleaned is None:
        return None
    totp = pyotp.TOTP(secret, interval=STEP_S)
    current = int(now.timestamp()) // STEP_S
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), cleaned):
            return step
    return None


@dataclass(frozen=True)
class Enrolment:
    """A secret being set up, as the person's authenticator app takes it."""

    secret: str
    uri: str
    qr: str  # a data: URI of the QR code as SVG (the pages' CSP allows data: images only)

    @property
    def grouped(self) -> str:
        """The secret in groups of four, for typing it in by hand."""
        return " ".join(self.secret[i : i + 4] for i in range(0, len(self.secret), 4))


class ChallengeOutcome(StrEnum):
    """What became of a code given at sign-in."""

    PASSED = "passed"
    WRONG = "wrong"  # tries remain
    OVER = "over"  # expired, used up, or unknown: sign in again with the password


@dataclass(frozen=True)
class ChallengeResult:
    """The account that signed in (PASSED), or why not."""

    outcome: ChallengeOutcome
    account: StaffAccount | None = None


class TwoFactor:
    """Turn the second factor on and off, and check codes at sign-in."""

    def __init__(
        self,
        storage: Storage,
        clock: Callable[[], datetime] = utcnow,
        policy: LockoutPolicy | None = None,
    ) -> None:
        self.storage, self.clock = storage, clock
        self.policy = policy or LockoutPolicy()

    def _enrolment(self, account: StaffAccount, secret: str) -> Enrolment:
        uri = pyotp.TOTP(secret, interval=STEP_S).provisioning_uri(
            name=account.username, issuer_name=ISSUER
        )
        qr = segno.make(uri, error="m").svg_data_uri(scale=5, dark="#111", light="#fff")
        return Enrolment(secret=secret, uri=uri, qr=qr)

    async def begin(self, account: StaffAccount) -> Enrolment:
        """A new secret for `account` to add to its app; kept aside until confirmed."""
        secret = pyotp.random_base32()  # 160 bits, as RFC 4226 recommends

        def work(s: Session) -> None:
            row = s.get(StaffUser, account.id)
            if row is None or row.disabled:
                raise InvalidAccount("this account is disabled")
            row.totp_pending_secret = secret
            s.add(row)
            s.commit()

        await self.storage.run(work)
        return self._enrolment(account, secret)

    async def pending(self, account: StaffAccount) -> Enrolment | None:
        """The secret being set up, to show again after a wrong code; None if none is."""
        row = await self.storage.run(lambda s: s.get(StaffUser, account.id))
        if row is None or row.totp_pending_secret is None:
            return None
        return self._enrolment(account, row.totp_pending_secret)

    async def confirm(self, account: StaffAccount, code: str) -> bool:
        """Turn the second factor on if `code` comes from the secret being set up."""
        now = self.clock()

        def work(s: Session) -> bool:
            row = s.get(StaffUser, account.id)
            if row is None or row.totp_pending_secret is None or row.disabled:
                return False
            step = matching_step(row.totp_pending_secret, code, now)
            if step is None:
                s.add(
                    audit_event(account.label, "staff.2fa_code_refused", "staff_user", str(row.id))
                )
                s.commit()
                return False
            row.totp_secret, row.totp_pending_secret, row.totp_last_step = (
                row.totp_pending_secret,
                None,
                step,
            )
            s.add(row)
            s.add(audit_event(account.label, "staff.2fa_enabled", "staff_user", str(row.id)))
            s.commit()
            return True

        done = await self.storage.run(work)
        if done:
            logger.info("staff account %s: second factor on", account.id)
        return done

    async def turn_off(self, account: StaffAccount) -> None:
        """The owner turns it off (the caller has had them prove who they are: password and a
        current code, bot/dashboard/reauth.py)."""
        await self.storage.run(lambda s: self._clear(s, account.id, account.label, "disabled"))
        logger.info("staff account %s: second factor off", account.id)

    async def reset(self, username: str, by: str = "cli") -> StaffAccount:
        """An administrator turns it off (a lost phone). Raises UnknownAccount."""

        def work(s: Session) -> StaffAccount:
            row = row_named(s, username)
            assert row.id is not None  # row_named refuses rows without one
            return self._clear(s, row.id, by, "reset")

        account = await self.storage.run(work)
        logger.info("staff account %s: second factor reset", account.id)
        return account

    @staticmethod
    def _clear(s: Session, staff_id: int, by: str, how: str) -> StaffAccount:
        row = s.get(StaffUser, staff_id)
        if row is None:
            raise UnknownAccount("the account is gone")
        row.totp_secret = row.totp_pending_secret = None
        row.totp_last_step = None
        s.add(row)
        s.add(audit_event(by, f"staff.2fa_{how}", "staff_user", str(staff_id)))
        s.execute(delete(StaffLoginChallenge).where(col(StaffLoginChallenge.staff_id) == staff_id))
        s.execute(delete(StaffRecoveryCode).where(col(StaffRecoveryCode.staff_id) == staff_id))
        s.commit()
        return account_from_row(row)

    async def verify(self, account: StaffAccount, code: str, client: str = "") -> bool:
        """Whether `code` (or an unused recovery code) is right for the account, which is then
        used up: for a sign-in outside the browser, and for re-confirming who is acting."""
        return await self._spend(account.id, code, client)

    async def _spend(
        self, staff_id: int, code: str, client: str = "", known_device: bool = False
    ) -> bool:
        """True if `code` is right for the account and newer than any code used before (or is
        one of its unused recovery codes); it is then used up (two requests with one code: the
        database lets only one through). A wrong code counts against the account, as a wrong
        password does, and a locked account takes no code at all."""
        now = self.clock()
        recovery = _recovery_digest(code)

        def work(s: Session) -> bool:
            row = s.get(StaffUser, staff_id)
            if row is None or row.totp_secret is None or row.disabled:
                return False
            locked = aware(row.locked_until)
            if locked is not None and locked > now and not known_device:
                return False
            if recovery is not None:
                return _spend_recovery(s, row, recovery, now, client, self.policy)
            step = matching_step(row.totp_secret, code, now)
            spent = step is not None and bool(
                s.execute(
                    update(StaffUser)
                    .where(col(StaffUser.id) == staff_id)
                    .where(
                        col(StaffUser.totp_last_step).is_(None)
                        | (col(StaffUser.totp_last_step) < step)
                    )
                    .values(totp_last_step=step, failed_logins=0)
                ).rowcount  # type: ignore[attr-defined]
            )
            if not spent:
                s.exec(
                    update(StaffUser)
                    .where(col(StaffUser.id) == staff_id)
                    .values(failed_logins=col(StaffUser.failed_logins) + 1)
                )
                s.refresh(row)
                lock_if_over(s, row, now, self.policy)
            s.commit()
            return spent

        return await self.storage.run(work)

    async def new_recovery_codes(self, account: StaffAccount, by: str) -> list[str]:
        """Ten fresh one-time recovery codes for an account with two-step sign-in, shown once;
        the earlier ones stop working."""
        codes = [
            "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
            for _ in range(RECOVERY_CODES)
        ]

        def work(s: Session) -> None:
            row = s.get(StaffUser, account.id)
            if row is None or row.totp_secret is None:
                raise InvalidAccount("turn two-step sign-in on first")
            s.execute(delete(StaffRecoveryCode).where(col(StaffRecoveryCode.staff_id) == row.id))
            for code in codes:
                s.add(StaffRecoveryCode(staff_id=account.id, code_hash=_recovery_hash(code)))
            s.add(audit_event(by, "staff.recovery_codes_made", "staff_user", str(account.id)))
            s.commit()

        await self.storage.run(work)
        return [f"{c[:5]}-{c[5:]}" for c in codes]

    async def recovery_left(self, account: StaffAccount) -> int:
        """How many unused recovery codes the account has."""

        def work(s: Session) -> int:
            rows = s.exec(
                select(StaffRecoveryCode.id).where(
                    StaffRecoveryCode.staff_id == account.id,
                    col(StaffRecoveryCode.used_at).is_(None),
                )
            ).all()
            return len(rows)

        return await self.storage.run(work)

    async def challenge(self, account: StaffAccount) -> str:
        """After a right password: a token for the browser, good for one code."""
        token = secrets.token_urlsafe(32)

        def work(s: Session) -> None:
            now = self.clock()
            s.execute(  # swept here rather than by a timer, as sign-ins are
                delete(StaffLoginChallenge).where(
                    col(StaffLoginChallenge.created_at) < now - CHALLENGE_TTL
                )
            )
            s.add(
                StaffLoginChallenge(token_hash=_digest(token), staff_id=account.id, created_at=now)
            )
            s.commit()

        await self.storage.run(work)
        return token

    async def answer(
        self, token: str, code: str, client: str = "", known_device: bool = False
    ) -> ChallengeResult:
        """Check the code given for a challenge; the challenge ends when it passes, expires
        or has had its tries."""
        now = self.clock()

        def find(s: Session) -> tuple[int, int] | None:
            row = s.exec(
                select(StaffLoginChallenge).where(StaffLoginChallenge.token_hash == _digest(token))
            ).first()
            if row is None or row.id is None:
                return None
            began = aware(row.created_at) or now
            user = s.get(StaffUser, row.staff_id)
            if now - began > CHALLENGE_TTL or user is None or user.disabled:
                s.delete(row)
                s.commit()
                return None
            return row.id, row.staff_id

        found = await self.storage.run(find) if token else None
        if found is None:
            return ChallengeResult(ChallengeOutcome.OVER)
        challenge_id, staff_id = found
        passed = await self._spend(staff_id, code, client, known_device)
        return await self.storage.run(
            lambda s: self._settle(s, challenge_id, staff_id, passed, client)
        )

    @staticmethod
    def _settle(
        s: Session, challenge_id: int, staff_id: int, passed: bool, client: str
    ) -> ChallengeResult:
        actor, subject = f"staff:{staff_id}", str(staff_id)
        row = s.get(StaffLoginChallenge, challenge_id)
        user = s.get(StaffUser, staff_id)
        if row is None or user is None:  # answered meanwhile by a parallel request
            return ChallengeResult(ChallengeOutcome.OVER)
        if passed:
            s.delete(row)
            s.add(audit_event(actor, "staff.login_2fa", "staff_user", subject, client=client))
            s.commit()
            return ChallengeResult(ChallengeOutcome.PASSED, account_from_row(user))
        row.failures += 1
        over = row.failures >= CHALLENGE_TRIES
        if over:
            s.delete(row)
        else:
            s.add(row)
        s.add(
            audit_event(
                actor,
                "staff.login_failed",
                "staff_user",
                subject,
                reason="wrong_code",
                client=client,
                failures=row.failures,
            )
        )
        s.commit()
        return ChallengeResult(ChallengeOutcome.OVER if over else ChallengeOutcome.WRONG)


def _recovery_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _recovery_digest(code: str) -> str | None:
    """The hash to look a recovery code up by, or None when `code` is not shaped like one
    (six digits from the app are never mistaken for it)."""
    normal = "".join(ch for ch in code.upper() if ch.isalnum())
    if len(normal) != RECOVERY_LENGTH or any(ch not in RECOVERY_ALPHABET for ch in normal):
        return None
    return _recovery_hash(normal)


def _spend_recovery(
    s: Session, row: StaffUser, digest: str, now: datetime, client: str, policy: LockoutPolicy
) -> bool:
    used = s.execute(
        update(StaffRecoveryCode)
        .where(
            col(StaffRecoveryCode.staff_id) == row.id,
            col(StaffRecoveryCode.code_hash) == digest,
            col(StaffRecoveryCode.used_at).is_(None),
        )
        .values(used_at=now)
    ).rowcount  # type: ignore[attr-defined]
    subject = str(row.id)
    if used:
        row.failed_logins = 0
        s.add(row)
        s.add(
            audit_event(
                f"staff:{subject}", "staff.recovery_code_used", "staff_user", subject, client=client
            )
        )
    else:
        row.failed_logins += 1
        s.add(row)
        lock_if_over(s, row, now, policy)
    s.commit()
    return bool(used)
