"""`carebot users add|list|disable|reset-password|reset-2fa`: the dashboard's staff accounts
(patients have none)."""

from __future__ import annotations

import asyncio
import getpass
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from bot.dashboard.roles import Role

if TYPE_CHECKING:
    from datetime import datetime

    from bot.config import Settings
    from bot.dashboard.accounts import StaffAccount
    from bot.storage.repository import Storage

T = TypeVar("T")
users_app = typer.Typer(help="Staff accounts for the doctors' dashboard.", no_args_is_help=True)


def _settings() -> Settings:
    from bot.cli import _settings

    return _settings()


def _with_storage(settings: Settings, work: Callable[[Storage], Coroutine[Any, Any, T]]) -> T:
    from bot.dashboard.errors import AccountError
    from bot.storage.migrate import upgrade
    from bot.storage.repository import Storage, make_engine

    # Each migration is announced at INFO: noise in a one-line command's output.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        upgrade(engine)
        return asyncio.run(work(Storage(engine)))
    except AccountError as exc:
        typer.echo(f"carebot: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password (10 characters or more): ")
    if getpass.getpass("Repeat the password: ") != first:
        typer.echo("carebot: the passwords differ; nothing was saved", err=True)
        raise typer.Exit(2)
    return first


@users_app.command("add")
def add(
    username: Annotated[str, typer.Argument(help="Sign-in name, e.g. ada.lovelace.")],
    role: Annotated[Role, typer.Option(help="doctor, operator or admin.")],
    name: Annotated[str, typer.Option("--name", help='Shown to patients: "Dr Ada".')],
    telegram_id: Annotated[
        int | None, typer.Option(help="Their Telegram user id, for the doctors' group.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a staff account (the password is asked for twice unless piped)."""
    from bot.dashboard.accounts import StaffAccounts
    from bot.dashboard.passwords import MIN_LENGTH

    config = _settings()
    password = _read_password(password_stdin)
    if len(password) < MIN_LENGTH:
        typer.echo(f"carebot: a password needs at least {MIN_LENGTH} characters", err=True)
        raise typer.Exit(2)
    account = _with_storage(
        config,
        lambda storage: StaffAccounts(storage).add(username, name, role, password, telegram_id),
    )
    typer.echo(f"created {account.role.value} {account.username} ({account.display_name})")


@users_app.command("list")
def list_() -> None:
    """List staff accounts: username, name, role, Telegram id, state."""
    from bot.dashboard.accounts import StaffAccounts
    from bot.models import utcnow

    accounts = _with_storage(_settings(), lambda storage: StaffAccounts(storage).all())
    if not accounts:
        typer.echo("no staff accounts yet: carebot users add USERNAME --role doctor --name ...")
        return
    now = utcnow()
    rows = [("USERNAME", "NAME", "ROLE", "TELEGRAM", "2FA", "STATE")]
    for a in accounts:
        state = "disabled" if a.disabled else "active"
        if not a.disabled and a.locked_until is not None and a.locked_until > now:
            state = f"locked until {a.locked_until:%H:%M} UTC"
        telegram = str(a.telegram_user_id) if a.telegram_user_id else "-"
        two_factor = "on" if a.two_factor else "-"
        rows.append((a.username, a.display_name, a.role.value, telegram, two_factor, state))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@users_app.command("set-role")
def set_role(
    username: Annotated[str, typer.Argument(help="The account whose role changes.")],
    role: Annotated[Role, typer.Argument(help="doctor, operator or admin.")],
) -> None:
    """Change an account's role; its sign-ins end, so the new rights apply at once."""
    from bot.dashboard.accounts import StaffAccounts

    config = _settings()

    async def work(storage: Storage) -> int:
        from bot.dashboard.sessions import LoginSessions

        account = await StaffAccounts(storage).set_role(username, role, "cli")
        return await LoginSessions(storage, config.dashboard_session_idle_s).end_all(account.id)

    ended = _with_storage(config, work)
    name = username.strip().lower()
    typer.echo(f"{name} is now {role.value} (signed out of {ended} session(s))")


@users_app.command("review")
def review() -> None:
    """Access review: who can do what, how they sign in, and when they last did."""
    from bot.dashboard.accounts import StaffAccounts

    async def work(storage: Storage) -> tuple[list[StaffAccount], dict[int, datetime]]:
        accounts = StaffAccounts(storage)
        return await accounts.all(), await accounts.last_sign_ins()

    accounts, seen = _with_storage(_settings(), work)
    rows = [("USERNAME", "ROLE", "CAN", "2FA", "TELEGRAM", "STATE", "LAST SIGN-IN")]
    for a in accounts:
        can = [
            name
            for name, allowed in (
                ("read cases", a.reads_cases),
                ("edit prompts", a.edits_prompts),
                ("approve safety texts", a.approves_safety_texts),
            )
            if allowed
        ]
        last = seen.get(a.id)
        rows.append(
            (
                a.username,
                a.role.value,
                ", ".join(can) or "-",
                "on" if a.two_factor else "OFF",
                "linked" if a.telegram_user_id else "-",
                "disabled" if a.disabled else "active",
                f"{last:%Y-%m-%d %H:%M} UTC" if last else "never",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@users_app.command("disable")
def disable(
    username: Annotated[str, typer.Argument(help="The account to disable.")],
) -> None:
    """Stop an account from signing in and end its open sign-ins."""
    from bot.dashboard.accounts import StaffAccounts
    from bot.dashboard.sessions import LoginSessions

    config = _settings()

    async def work(storage: Storage) -> int:
        account = await StaffAccounts(storage).disable(username)
        return await LoginSessions(storage, config.dashboard_session_idle_s).end_all(account.id)

    ended = _with_storage(config, work)
    typer.echo(f"disabled {username.strip().lower()} (signed out of {ended} session(s))")


@users_app.command("reset-password")
def reset_password(
    username: Annotated[str, typer.Argument(help="The account whose password is forgotten.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the new password from standard input.")
    ] = False,
) -> None:
    """Set a new password for an account (asked twice unless piped), lift its lock and end its
    sign-ins."""
    from bot.dashboard.accounts import StaffAccounts
    from bot.dashboard.passwords import MIN_LENGTH

    config = _settings()
    password = _read_password(password_stdin)
    if len(password) < MIN_LENGTH:
        typer.echo(f"carebot: a password needs at least {MIN_LENGTH} characters", err=True)
        raise typer.Exit(2)

    async def work(storage: Storage) -> int:
        account = await StaffAccounts(storage).set_password(username, password, "cli")
        return await _cut_off(storage, config, account)

    ended = _with_storage(config, work)
    typer.echo(
        f"new password for {username.strip().lower()} (signed out of {ended} session(s); "
        "its Telegram link, if any, is ended: the owner links again from the dashboard)"
    )


@users_app.command("reset-2fa")
def reset_two_factor(
    username: Annotated[str, typer.Argument(help="The account whose phone is lost.")],
) -> None:
    """Turn two-step sign-in off for an account (a lost phone) and end its sign-ins; its
    owner signs in with the password alone and can set it up again."""
    from bot.dashboard.two_factor import TwoFactor

    config = _settings()

    async def work(storage: Storage) -> int:
        account = await TwoFactor(storage).reset(username)
        return await _cut_off(storage, config, account)

    ended = _with_storage(config, work)
    typer.echo(
        f"two-step sign-in off for {username.strip().lower()} (signed out of {ended} "
        "session(s); its Telegram link, if any, is ended)"
    )


async def _cut_off(storage: Storage, config: Settings, account: StaffAccount) -> int:
    """After an administrator's reset (a password or phone in someone else's hands): end the
    account's sign-ins and its Telegram link, which would otherwise outlive the reset."""
    from bot.dashboard.sessions import LoginSessions
    from bot.dashboard.telegram_link import TelegramLinks

    if account.telegram_user_id is not None:
        await TelegramLinks(storage).unlink(account, "cli")
    return await LoginSessions(storage, config.dashboard_session_idle_s).end_all(account.id)


@users_app.command("unlink-telegram")
def unlink_telegram(
    username: Annotated[str, typer.Argument(help="The account whose Telegram link ends.")],
) -> None:
    """End an account's Telegram link (a lost phone, a departed colleague's group seat)."""
    from bot.dashboard.accounts import StaffAccounts
    from bot.dashboard.telegram_link import TelegramLinks

    config = _settings()

    async def work(storage: Storage) -> bool:
        account = await StaffAccounts(storage).named(username)
        linked = account.telegram_user_id is not None
        await TelegramLinks(storage).unlink(account, "cli")
        return linked

    linked = _with_storage(config, work)
    name = username.strip().lower()
    typer.echo(f"unlinked {name} from Telegram" if linked else f"{name} had no Telegram link")


@users_app.command("enable")
def enable(
    username: Annotated[str, typer.Argument(help="The disabled account to enable again.")],
) -> None:
    """Let a disabled account sign in again (and lift any lock)."""
    from bot.dashboard.accounts import StaffAccounts

    config = _settings()
    _with_storage(config, lambda storage: StaffAccounts(storage).enable(username, "cli"))
    typer.echo(f"enabled {username.strip().lower()}")


def register(app: typer.Typer) -> None:
    """Add `carebot users` to the `carebot` CLI."""
    app.add_typer(users_app, name="users")
