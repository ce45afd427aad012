"""`carebot records requests|erase|keep|hold|release|holds`: the clinical record's erasure
requests and legal holds (bot/storage/clinical_record.py).

An administrator decides, signed in as at the dashboard (password, and the code with two-step
sign-in; `--password-stdin` takes both), with a reason that goes into the audit log. Erasing
a record is refused while a legal hold is in force or a case of the patient's is still open
or claimed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from sqlmodel import Session

    from bot.storage.repository import Storage

records_app = typer.Typer(
    help="The clinical record: erasure requests and legal holds.", no_args_is_help=True
)
T = TypeVar("T")
_By = Annotated[str, typer.Option("--by", help="Your staff username (an admin); you sign in.")]
_Reason = Annotated[
    str, typer.Option("--reason", help="Why: kept in the audit log (no patient text).")
]
_PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password (and then the two-step code) from standard input.",
    ),
]


def _storage() -> Storage:
    from bot.cli import _settings
    from bot.storage.migrate import upgrade
    from bot.storage.repository import Storage, make_engine

    engine = make_engine(_settings().sqlalchemy_url)
    upgrade(engine)
    return Storage(engine)


def _admin(storage: Storage, username: str, password_stdin: bool) -> str:
    """The signed-in administrator's audit label."""
    from bot.dashboard.roles import ADMINS
    from bot.dashboard.terminal_sign_in import fail, sign_in

    account = sign_in(storage, username, password_stdin)
    if account.role not in ADMINS:
        raise fail("only administrators decide on clinical records and legal holds")
    return account.label


def _act(storage: Storage, work: Callable[[Session], T]) -> T:
    """Run one decision; its refusal becomes the command's error."""
    from bot.dashboard.terminal_sign_in import fail
    from bot.storage.clinical_record import RecordKept

    try:
        return asyncio.run(storage.run(work))
    except (RecordKept, LookupError) as exc:
        raise fail(str(exc).strip("'\"")) from exc
    finally:
        storage.engine.dispose()


@records_app.command("requests")
def requests() -> None:
    """List patients' requests to erase their clinical record that wait for a decision."""
    from bot.storage.clinical_record import pending_requests

    storage = _storage()
    rows = _act(storage, pending_requests)
    if not rows:
        typer.echo("no erasure requests wait for a decision")
    for r in rows:
        last = r["last_closed_at"].date().isoformat() if r["last_closed_at"] else "-"
        flags = ", ".join(
            flag for flag, on in (("ON HOLD", r["held"]), ("CASE ACTIVE", r["active"])) if on
        )
        typer.echo(
            f"{r['id']:>5}  {r['pseudonym']}  asked {r['requested_at']:%Y-%m-%d}  "
            f"cases {r['cases']}, last closed {last}" + (f"  [{flags}]" if flags else "")
        )


def _as_admin(by: str, password_stdin: bool, work: Callable[[Session, str], object]) -> Storage:
    """Sign an administrator in and run `work` with their audit label; the storage, for
    what follows (its connections are closed, and open again on use)."""
    storage = _storage()
    actor = _admin(storage, by, password_stdin)
    _act(storage, lambda s: work(s, actor))
    return storage


@records_app.command("erase")
def erase(
    request_id: int, by: _By, reason: _Reason, password_stdin: _PasswordStdin = False
) -> None:
    """Grant an erasure request: the patient's clinical record is erased."""
    from bot.storage.clinical_record import decide

    storage = _as_admin(
        by, password_stdin, lambda s, actor: decide(s, request_id, True, actor, reason)
    )
    try:
        asyncio.run(storage.scrub())  # no copy left in SQLite's write-ahead log
    finally:
        storage.engine.dispose()
    typer.echo(f"erasure request {request_id}: the clinical record is erased")


@records_app.command("keep")
def keep(request_id: int, by: _By, reason: _Reason, password_stdin: _PasswordStdin = False) -> None:
    """Refuse an erasure request: the record is kept (say why, e.g. the legal period)."""
    from bot.storage.clinical_record import decide

    _as_admin(by, password_stdin, lambda s, actor: decide(s, request_id, False, actor, reason))
    typer.echo(f"erasure request {request_id}: the clinical record is kept")


@records_app.command("hold")
def hold(pseudonym: str, by: _By, reason: _Reason, password_stdin: _PasswordStdin = False) -> None:
    """Place a legal hold: nothing of the patient's is erased until it is released."""
    from bot.storage.clinical_record import hold as place

    _as_admin(by, password_stdin, lambda s, actor: place(s, pseudonym, actor, reason))
    typer.echo(f"{pseudonym}: on legal hold")


@records_app.command("release")
def release(
    pseudonym: str, by: _By, reason: _Reason, password_stdin: _PasswordStdin = False
) -> None:
    """End a legal hold; retention and erasure requests apply again."""
    from bot.storage.clinical_record import release as end

    _as_admin(by, password_stdin, lambda s, actor: end(s, pseudonym, actor, reason))
    typer.echo(f"{pseudonym}: legal hold released")


@records_app.command("holds")
def holds() -> None:
    """List the legal holds in force."""
    from bot.storage.clinical_record import holds as in_force

    storage = _storage()
    rows = _act(storage, lambda s: [(p, h.placed_by, h.placed_at) for p, h in in_force(s)])
    if not rows:
        typer.echo("no legal hold is in force")
    for pseudonym, placed_by, placed_at in rows:
        typer.echo(f"{pseudonym}  since {placed_at:%Y-%m-%d}  by {placed_by}")


def register(app: typer.Typer) -> None:
    """Add `carebot records` to the command line."""
    app.add_typer(records_app, name="records")
