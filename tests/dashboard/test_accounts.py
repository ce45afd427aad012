"""Staff accounts and sign-ins as services, with a clock the test moves."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import pytest
from sqlmodel import Session, select

from bot.dashboard.accounts import LockoutPolicy, LoginFailure, StaffAccounts
from bot.dashboard.errors import DuplicateAccount, InvalidAccount, UnknownAccount
from bot.dashboard.roles import Role
from bot.dashboard.sessions import LoginSessions
from bot.models import utcnow
from bot.storage.migrate import upgrade
from bot.storage.repository import Storage, make_engine
from bot.storage.tables import AuditEvent, StaffSession, StaffUser
from bot.workers import WorkerPool

PASSWORD = "a long enough password"


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


async def test_passwords_are_stored_as_argon2id_hashes(storage: Storage) -> None:
    await StaffAccounts(storage).add("ada", "Dr Ada", Role.DOCTOR, PASSWORD)
    with Session(storage.engine) as s:
        row = s.exec(select(StaffUser)).one()
    assert row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash


@pytest.mark.parametrize(
    ("username", "name", "password", "problem"),
    [
        ("a", "Dr A", PASSWORD, "username"),
        ("ada lovelace", "Dr A", PASSWORD, "username"),
        ("<ada>", "Dr A", PASSWORD, "username"),
        ("ada", "  ", PASSWORD, "display name"),
        ("ada", "Dr A", "123456789", "at least 10 characters"),
        # Breached, common or patterned (zxcvbn's offline lists): refused with its advice.
        ("ada", "Dr A", "password1234", "too easy to guess \\(this is a very common password\\)"),
        ("ada", "Dr A", "qwertyuiop123", "Add another word"),
        ("ada", "Dr A", "iloveyou2020", "similar to a commonly used password"),
        ("ada", "Dr A", "x" * 12, "too easy to guess"),
    ],
)
async def test_bad_accounts_are_refused_with_the_reason(
    storage: Storage, username: str, name: str, password: str, problem: str
) -> None:
    with pytest.raises(InvalidAccount, match=problem):
        await StaffAccounts(storage).add(username, name, Role.DOCTOR, password)


async def test_usernames_and_telegram_ids_are_unique(storage: Storage) -> None:
    accounts = StaffAccounts(storage)
    await accounts.add("ada", "Dr Ada", Role.DOCTOR, PASSWORD, telegram_user_id=7)
    with pytest.raises(DuplicateAccount, match="'ada' already exists"):
        await accounts.add("ADA", "Dr Ada 2", Role.DOCTOR, PASSWORD)
    with pytest.raises(DuplicateAccount, match="Telegram id 7"):
        await accounts.add("bob", "Dr Bob", Role.DOCTOR, PASSWORD, telegram_user_id=7)
    with pytest.raises(UnknownAccount):
        await accounts.disable("nobody")


async def test_a_lock_runs_out_and_a_success_resets_the_count(storage: Storage) -> None:
    clock = Clock()
    accounts = StaffAccounts(storage, policy=LockoutPolicy(5, 900), clock=clock)
    await accounts.add("ada", "Dr Ada", Role.DOCTOR, PASSWORD)
    for _ in range(4):
        assert (await accounts.authenticate("ada", "wrong")).failure is LoginFailure.WRONG
    assert (await accounts.authenticate("ada", PASSWORD)).account is not None  # count reset
    for _ in range(4):
        await accounts.authenticate("ada", "wrong")
    locked = await accounts.authenticate("ada", "wrong")
    assert locked.failure is LoginFailure.LOCKED
    assert locked.locked_until == clock.now + timedelta(seconds=900)
    clock.advance(minutes=14)
    assert (await accounts.authenticate("ada", PASSWORD)).failure is LoginFailure.LOCKED
    clock.advance(minutes=2)
    result = await accounts.authenticate("ada", PASSWORD)
    assert result.account is not None and result.account.display_name == "Dr Ada"


async def test_sign_ins_end_when_idle_and_keep_only_a_hash(storage: Storage) -> None:
    clock = Clock()
    account = await StaffAccounts(storage).add("ada", "Dr Ada", Role.DOCTOR, PASSWORD)
    sessions = LoginSessions(storage, idle_s=3600, clock=clock)
    token = await sessions.start(account)
    with Session(storage.engine) as s:
        stored = s.exec(select(StaffSession)).one()
    assert token not in (stored.token_hash, stored.csrf_token)
    clock.advance(minutes=50)
    assert await sessions.resolve(token) is not None  # a request keeps it alive ...
    clock.advance(minutes=50)
    assert await sessions.resolve(token) is not None
    clock.advance(minutes=61)
    assert await sessions.resolve(token) is None  # ... an hour without one ends it
    assert await sessions.resolve("made-up-token") is None


async def test_a_stream_does_not_keep_a_sign_in_alive(storage: Storage) -> None:
    clock = Clock()
    account = await StaffAccounts(storage).add("ada", "Dr Ada", Role.DOCTOR, PASSWORD)
    sessions = LoginSessions(storage, idle_s=3600, clock=clock)
    token = await sessions.start(account)
    for _ in range(3):
        clock.advance(minutes=25)
        if await sessions.resolve(token, touch=False) is None:
            break
    assert await sessions.resolve(token) is None


async def test_parallel_wrong_guesses_all_count_and_lock_once(database_url: str) -> None:
    # Four storage threads (a server database's pool): every guess reads the count at the
    # same moment. A read-then-write count lost guesses on SQLite, where FOR UPDATE is a no-op.
    engine = make_engine(database_url)
    upgrade(engine)
    storage = Storage(engine, WorkerPool("guesses", 4))
    accounts = StaffAccounts(storage, policy=LockoutPolicy(5, 900))
    await accounts.add("ada", "Dr Ada", Role.DOCTOR, PASSWORD)
    results = await asyncio.gather(
        *(accounts.authenticate("ada", f"wrong guess {n}") for n in range(5))
    )
    assert [r.failure for r in results].count(LoginFailure.LOCKED) == 1
    after = await accounts.authenticate("ada", PASSWORD)
    assert after.account is None and after.failure is LoginFailure.LOCKED
    with Session(engine) as s:
        locks = s.exec(select(AuditEvent).where(AuditEvent.action == "staff.locked")).all()
    assert len(locks) == 1


async def test_a_sign_in_does_not_hold_the_database_while_argon2_runs(storage: Storage) -> None:
    # SQLite has one storage thread, shared with every patient's message: a password check
    # (~50 ms of argon2) inside a database call would queue them all behind it.
    accounts = StaffAccounts(storage)
    await accounts.add("ada", "Dr Ada", Role.DOCTOR, PASSWORD)
    signing_in = [asyncio.create_task(accounts.authenticate("ada", PASSWORD)) for _ in range(6)]
    await asyncio.sleep(0.01)  # the sign-ins are under way (reads done, argon2 running)
    started = time.perf_counter()
    await storage.run(lambda s: s.exec(select(StaffUser)).all())
    waited = time.perf_counter() - started
    results = await asyncio.gather(*signing_in)
    assert all(r.account is not None for r in results)
    assert waited < 0.1, f"a database read waited {waited:.3f} s behind password checks"
