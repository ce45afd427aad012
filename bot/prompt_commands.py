"""`carebot prompts list|show|diff|publish|rollback|requests|approve|reject`: prompt versions
from a terminal.

A running CareBot picks a published version up within CAREBOT_PROMPT_RELOAD_S seconds. A
change to a safety-critical text waits for approval. Every command that changes something
signs in as a staff account, as the dashboard does (its password, and a code from its
authenticator app when it has two-step sign-in): `publish` and `rollback` as an operator or
admin, `approve` and `reject` as a clinician or admin, which must not be the account that
proposed the change. Whoever runs these commands can reach the database, so this proves two
staff credentials, not two people at the keyboard (docs/security.md).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from bot.dashboard.accounts import StaffAccount
from bot.dashboard.terminal_sign_in import fail, sign_in
from bot.prompt_approvals import ApprovalRequest, PublishRefused, Reviewer
from bot.prompt_store import PromptStore, Version, diff

prompts_app = typer.Typer(help="Versioned prompt templates.", no_args_is_help=True)
_By = Annotated[
    str, typer.Option("--by", help="Your staff username (operator or admin); you sign in.")
]
_Note = Annotated[str, typer.Option("--note", help="Why: shown in the history.")]
_PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password (and then the two-step code) from standard input.",
    ),
]


def _store() -> PromptStore:
    from bot.cli import _settings
    from bot.prompts import PromptLibrary
    from bot.storage.migrate import upgrade
    from bot.storage.repository import Storage, make_engine

    settings = _settings()
    db = make_engine(settings.sqlalchemy_url)
    upgrade(db)
    store = PromptStore(Storage(db), PromptLibrary(settings.prompts_dir))
    asyncio.run(store.seed())
    return store


def _editor(store: PromptStore, username: str, password_stdin: bool) -> StaffAccount:
    """A signed-in operator or admin: who may change what CareBot says."""
    account = sign_in(store.storage, username, password_stdin)
    if not account.edits_prompts:
        raise fail("only operators and admins change prompts; doctors approve safety texts")
    return account


def _reviewer(store: PromptStore, username: str, password_stdin: bool) -> Reviewer:
    """A signed-in staff account deciding on a waiting change."""
    return sign_in(store.storage, username, password_stdin).reviewer()


def _outcome(name: str, outcome: Version | ApprovalRequest) -> str:
    if isinstance(outcome, Version):
        return f"{name} version {outcome.version} is active"
    return (
        f"{name}: change {outcome.id} touches safety-critical texts "
        f"({', '.join(outcome.changes)}) and waits for approval; version "
        f"{outcome.base_version} stays active. A clinician or admin approves it with:\n"
        f"  carebot prompts approve {outcome.id} --by USERNAME (another account than yours)"
    )


@prompts_app.command("list")
def list_prompts() -> None:
    """Every prompt with its active version and last change."""
    active = asyncio.run(_store().active())
    for name, v in sorted(active.items()):
        when = v.created_at.strftime("%Y-%m-%d %H:%M")
        typer.echo(f"{name:<16} v{v.version:<4} {when}  {v.author}: {v.note}")


@prompts_app.command("show")
def show(
    name: str,
    version: Annotated[
        int | None, typer.Option("--version", help="Default: the active one.")
    ] = None,
    history: Annotated[bool, typer.Option("--history", help="List every version instead.")] = False,
) -> None:
    """Print a prompt's source (or its history)."""
    store = _store()
    versions = asyncio.run(store.history(name))
    if not versions:
        raise fail(f"there is no prompt named {name!r}")
    if history:
        for v in versions:
            mark = "*" if v.active else " "
            typer.echo(
                f"{mark} v{v.version:<4} {v.created_at:%Y-%m-%d %H:%M}  {v.author}: {v.note}"
            )
        return
    chosen = next((v for v in versions if (v.version == version if version else v.active)), None)
    if chosen is None:
        raise fail(f"{name} has no version {version}")
    typer.echo(chosen.source, nl=False)


@prompts_app.command("diff")
def show_diff(
    name: str,
    old: Annotated[int, typer.Argument(help="The older version.")],
    new: Annotated[str, typer.Argument(help="A newer version number, or a file.")] = "",
) -> None:
    """Diff two versions, or a version and a draft file (default: the active version)."""
    store = _store()
    versions = {v.version: v for v in asyncio.run(store.history(name))}
    if old not in versions:
        raise fail(f"{name} has no version {old}")
    if new.isdigit():
        if int(new) not in versions:
            raise fail(f"{name} has no version {new}")
        text, label = versions[int(new)].source, f"v{new}"
    elif new:
        text, label = Path(new).read_text(encoding="utf-8"), new
    else:
        active = next(v for v in versions.values() if v.active)
        text, label = active.source, f"v{active.version} (active)"
    typer.echo(diff(versions[old].source, text, f"v{old}", label) or "(no difference)")


@prompts_app.command("publish")
def publish(
    name: str,
    file: Annotated[Path, typer.Argument(help="The new source ('-' reads standard input).")],
    note: _Note,
    by: _By,
    base: Annotated[
        int | None, typer.Option("--base", help="The version you edited (default: the active one).")
    ] = None,
    password_stdin: _PasswordStdin = False,
) -> None:
    """Publish a new version of a prompt after checking it (you sign in)."""
    source = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    store = _store()
    active = asyncio.run(store.active())
    if name not in active:
        raise fail(f"there is no prompt named {name!r}")
    editor = _editor(store, by, password_stdin)
    base_version = base or active[name].version
    try:
        outcome = asyncio.run(
            store.publish(name, source, editor.author, note, base_version, editor.label)
        )
    except PublishRefused as exc:
        problems = "".join(f"\n  - {p}" for p in exc.problems)
        raise fail(f"not published: {exc}{problems}") from exc
    typer.echo(_outcome(name, outcome))


@prompts_app.command("rollback")
def rollback(
    name: str,
    version: Annotated[int, typer.Argument(help="The version to restore.")],
    by: _By,
    note: Annotated[str, typer.Option("--note", help="Why.")] = "",
    password_stdin: _PasswordStdin = False,
) -> None:
    """Make an earlier version active again (as a new version; you sign in)."""
    store = _store()
    editor = _editor(store, by, password_stdin)
    try:
        restored = asyncio.run(store.rollback(name, version, editor.author, note, editor.label))
    except PublishRefused as exc:
        raise fail(f"not rolled back: {exc}") from exc
    if isinstance(restored, Version):
        typer.echo(f"{name} version {restored.version} (the text of version {version}) is active")
    else:
        typer.echo(_outcome(name, restored))


_Username = Annotated[str, typer.Option("--by", help="Your staff username (clinician or admin).")]


@prompts_app.command("requests")
def requests(
    show: Annotated[
        int | None, typer.Option("--show", help="Print one change: its texts and diff.")
    ] = None,
) -> None:
    """Changes to safety-critical texts waiting for approval."""
    store = _store()
    if show is not None:
        _show_request(store, show)
        return
    waiting = asyncio.run(store.reviews.requests())
    for r in waiting:
        typer.echo(
            f"#{r.id:<4} {r.name:<16} {r.requested_at:%Y-%m-%d %H:%M}  {r.author}: {r.note} "
            f"[{', '.join(r.changes)}]"
        )
    if not waiting:
        typer.echo("nothing waits for approval")


def _show_request(store: PromptStore, request_id: int) -> None:
    from bot.cli import _settings

    request = asyncio.run(store.reviews.request(request_id))
    if request is None:
        raise fail(f"there is no change numbered {request_id}")
    typer.echo(f"change {request.id} to {request.name}: {request.status}, by {request.author}")
    typer.echo(f"why: {request.note}\n")
    if request.name in store.library.groups:
        settings = _settings()
        numbers = settings.emergency_numbers

        def number_for(language: str) -> str:
            return numbers.get(language, settings.emergency_number)

        for sample in store.library.render_texts(request.source, request.changes, number_for):
            typer.echo(f"--- {sample.key} ({sample.language}), as patients would read it:")
            typer.echo(sample.text + "\n")
    base = asyncio.run(store.version(request.name, request.base_version))
    typer.echo(
        diff(base.source if base else "", request.source, f"v{request.base_version}", "change")
    )


@prompts_app.command("approve")
def approve(
    request_id: Annotated[int, typer.Argument(help="The change's number (see `requests`).")],
    by: _Username,
    note: Annotated[str, typer.Option("--note", help="Optional: for the audit log.")] = "",
    password_stdin: _PasswordStdin = False,
) -> None:
    """Publish a waiting change to safety-critical texts, after reading it (`diff`)."""
    store = _store()
    reviewer = _reviewer(store, by, password_stdin)
    try:
        version = asyncio.run(store.reviews.approve(request_id, reviewer, note))
    except PublishRefused as exc:
        problems = "".join(f"\n  - {p}" for p in exc.problems)
        raise fail(f"not approved: {exc}{problems}") from exc
    typer.echo(f"{version.name} version {version.version} is active (approved by {by})")


@prompts_app.command("reject")
def reject(
    request_id: Annotated[int, typer.Argument(help="The change's number (see `requests`).")],
    by: _Username,
    note: Annotated[str, typer.Option("--note", help="Why it is turned down (required).")],
    password_stdin: _PasswordStdin = False,
) -> None:
    """Turn a waiting change down, saying why."""
    store = _store()
    reviewer = _reviewer(store, by, password_stdin)
    try:
        done = asyncio.run(store.reviews.reject(request_id, reviewer, note))
    except PublishRefused as exc:
        raise fail(f"not turned down: {exc}") from exc
    typer.echo(f"change {done.id} to {done.name} turned down")


def register(app: typer.Typer) -> None:
    """Add `carebot prompts` to the command line."""
    app.add_typer(prompts_app, name="prompts")
