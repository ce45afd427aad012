"""The prompt console's routes under /dashboard/prompts, for operators and admins.

Every button of the editor saves the operator's draft first, so nothing typed is lost: not on
a refused publish, not on a restart.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bot.dashboard.guards import Denied, PromptForm, PromptPage
from bot.dashboard.prompt_console import Editor, conversation_of
from bot.dashboard.services import DashboardServices, services
from bot.dashboard.sessions import SignedIn
from bot.prompt_approvals import ApprovalRequest, PublishRefused
from bot.prompts import MAX_SOURCE_CHARS

router = APIRouter(prefix="/dashboard/prompts", include_in_schema=False)
Services = Annotated[DashboardServices, Depends(services)]
# Longer drafts than the limit still arrive, so that the page can say what the limit is.
Source = Annotated[str, Form(max_length=2 * MAX_SOURCE_CHARS)]
BaseVersion = Annotated[int, Form(ge=0)]
Note = Annotated[str, Form(max_length=500)]
Sample = Annotated[str, Form(max_length=64)]
Conversation = Annotated[str, Form(max_length=8000)]


class EditorNotice(StrEnum):
    """The line shown above the editor after a redirect (the words live in the template)."""

    SAVED = "saved"
    PUBLISHED = "published"
    REQUESTED = "requested"
    WITHDRAWN = "withdrawn"
    RESTARTED = "restarted"
    REBASED = "rebased"


def _known(svc: DashboardServices, name: str, who: SignedIn) -> str:
    if not svc.prompts.knows(name):
        raise Denied(404, f"There is no prompt named {name!r}.", who=who)
    return name


async def _save(
    svc: DashboardServices, who: SignedIn, name: str, source: str, base_version: int
) -> Editor:
    """Save the signed-in operator's draft from the editor's form."""
    return await svc.prompts.save(_known(svc, name, who), who.account.author, source, base_version)


def _editor_page(
    svc: DashboardServices, who: SignedIn, editor: Editor, status: int = 200, **shown: Any
) -> HTMLResponse:
    context: dict[str, Any] = {
        "notice": None,
        "published": None,
        "problems": None,
        "preview": None,
        "diff": None,
        "refused": None,
        "note": "",
        "sample": svc.prompts.samples[0],
        "conversation": "",
    }
    context.update(shown)
    context.setdefault("waiting", [])
    return svc.pages.render(
        "prompt_edit.html",
        status=status,
        page="prompt",
        events=None,
        who=who,
        title=f"Edit {editor.name}",
        editor=editor,
        samples=svc.prompts.samples,
        **context,
    )


def _to_editor(name: str, **query: object) -> Response:
    args = "&".join(f"{key}={value}" for key, value in query.items())
    return RedirectResponse(f"/dashboard/prompts/{name}?{args}", 303)


@router.get("")
async def prompt_list(svc: Services, who: PromptPage) -> HTMLResponse:
    rows = await svc.prompts.overview(who.account.author)
    return svc.pages.render(
        "prompts.html", page="prompts", events=None, who=who, title="Prompts", rows=rows
    )


@router.get("/{name}")
async def edit(
    svc: Services,
    who: PromptPage,
    name: str,
    notice: EditorNotice | None = None,
    published: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    editor = await svc.prompts.editor(_known(svc, name, who), who.account.author)
    waiting = await svc.prompts.waiting(name)
    return _editor_page(svc, who, editor, notice=notice, published=published, waiting=waiting)


@router.post("/{name}/requests/{request_id}/withdraw")
async def withdraw(svc: Services, who: PromptForm, name: str, request_id: int) -> Response:
    try:
        await svc.prompts.withdraw(request_id, who.account.label)
    except PublishRefused as exc:
        raise Denied(409, str(exc), who=who) from exc
    return _to_editor(_known(svc, name, who), notice=EditorNotice.WITHDRAWN.value)


@router.post("/{name}/draft")
async def save_draft(
    svc: Services, who: PromptForm, name: str, source: Source = "", base_version: BaseVersion = 0
) -> Response:
    await _save(svc, who, name, source, base_version)
    return _to_editor(name, notice=EditorNotice.SAVED.value)


@router.post("/{name}/validate")
async def validate(
    svc: Services, who: PromptForm, name: str, source: Source = "", base_version: BaseVersion = 0
) -> HTMLResponse:
    editor = await _save(svc, who, name, source, base_version)
    return _editor_page(svc, who, editor, problems=svc.prompts.problems(name, editor.source))


@router.post("/{name}/preview")
async def preview(
    svc: Services,
    who: PromptForm,
    name: str,
    source: Source = "",
    base_version: BaseVersion = 0,
    sample: Sample = "",
    conversation: Conversation = "",
) -> HTMLResponse:
    editor = await _save(svc, who, name, source, base_version)
    shown = await svc.prompts.preview(editor, conversation_of(sample, conversation))
    return _editor_page(svc, who, editor, preview=shown, sample=sample, conversation=conversation)


@router.post("/{name}/diff")
async def show_diff(
    svc: Services, who: PromptForm, name: str, source: Source = "", base_version: BaseVersion = 0
) -> HTMLResponse:
    editor = await _save(svc, who, name, source, base_version)
    return _editor_page(svc, who, editor, diff=svc.prompts.diff(editor))


@router.post("/{name}/publish")
async def publish(
    svc: Services,
    who: PromptForm,
    name: str,
    source: Source = "",
    base_version: BaseVersion = 0,
    note: Note = "",
) -> Response:
    editor = await _save(svc, who, name, source, base_version)
    try:
        outcome = await svc.prompts.publish(editor, who.account.author, note, who.account.label)
    except PublishRefused as exc:
        status = 409 if editor.stale else 422
        return _editor_page(svc, who, editor, status, refused=exc, note=note)
    if isinstance(outcome, ApprovalRequest):
        return RedirectResponse(f"/dashboard/approvals/{outcome.id}?notice=requested", 303)
    return _to_editor(name, notice=EditorNotice.PUBLISHED.value, published=outcome.version)


@router.post("/{name}/rebase")
async def rebase(
    svc: Services, who: PromptForm, name: str, source: Source = "", base_version: BaseVersion = 0
) -> Response:
    editor = await _save(svc, who, name, source, base_version)
    await svc.prompts.rebase(editor, who.account.author)
    return _to_editor(name, notice=EditorNotice.REBASED.value)


@router.post("/{name}/start-again")
async def start_again(svc: Services, who: PromptForm, name: str) -> Response:
    await svc.prompts.start_again(_known(svc, name, who), who.account.author)
    return _to_editor(name, notice=EditorNotice.RESTARTED.value)


@router.get("/{name}/history")
async def history(
    svc: Services,
    who: PromptPage,
    name: str,
    version: Annotated[int | None, Query(ge=1)] = None,
    rolled_back: Annotated[int | None, Query(ge=1)] = None,
    as_version: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    done = (rolled_back, as_version) if rolled_back and as_version else None
    return await _history_page(svc, who, _known(svc, name, who), version, done)


@router.post("/{name}/rollback")
async def rollback(
    svc: Services,
    who: PromptForm,
    name: str,
    version: Annotated[int, Form(ge=1)] = 1,
    note: Note = "",
) -> Response:
    try:
        now = await svc.prompts.rollback(
            _known(svc, name, who), version, who.account.author, note, who.account.label
        )
    except PublishRefused as exc:
        return await _history_page(svc, who, name, None, None, refused=str(exc))
    if isinstance(now, ApprovalRequest):
        return RedirectResponse(f"/dashboard/approvals/{now.id}?notice=requested", 303)
    query = f"rolled_back={version}&as_version={now.version}"
    return RedirectResponse(f"/dashboard/prompts/{name}/history?{query}", 303)


async def _history_page(
    svc: DashboardServices,
    who: SignedIn,
    name: str,
    shown: int | None,
    rolled_back: tuple[int, int] | None,
    refused: str | None = None,
) -> HTMLResponse:
    versions = await svc.prompts.history(name)
    viewed = next((v for v in versions if v.version == shown), None)
    return svc.pages.render(
        "prompt_history.html",
        status=409 if refused else 200,
        page="prompt-history",
        events=None,
        who=who,
        title=f"History of {name}",
        prompt=name,
        purpose=svc.prompts.purpose(name),
        versions=versions,
        viewed=viewed,
        changes=svc.prompts.changes(versions, viewed.version) if viewed else [],
        rolled_back=rolled_back,
        refused=refused,
    )
