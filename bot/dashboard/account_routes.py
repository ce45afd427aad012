"""A staff member's own account, under /dashboard/account: changing the password."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bot.dashboard.errors import AccountError
from bot.dashboard.guards import StaffForm, StaffPage
from bot.dashboard.services import DashboardServices, services
from bot.dashboard.sessions import SignedIn

router = APIRouter(prefix="/dashboard/account", include_in_schema=False)
Services = Annotated[DashboardServices, Depends(services)]
Password = Annotated[str, Form(max_length=1024)]


def _page(
    svc: DashboardServices, who: SignedIn, changed: bool = False, refused: str | None = None
) -> HTMLResponse:
    return svc.pages.render(
        "account.html",
        status=422 if refused else 200,
        page="account",
        events=None,
        who=who,
        title="Your account",
        changed=changed,
        refused=refused,
    )


@router.get("")
async def account(svc: Services, who: StaffPage, changed: bool = False) -> HTMLResponse:
    return _page(svc, who, changed=changed)


@router.post("/password")
async def change_password(
    svc: Services,
    who: StaffForm,
    current: Password = "",
    new: Password = "",
    repeat: Password = "",
) -> Response:
    if new != repeat:
        return _page(svc, who, refused="the two new passwords differ")
    try:
        await svc.accounts.set_password(who.account.username, new, who.account.label, current)
    except AccountError as exc:
        return _page(svc, who, refused=str(exc))
    # Whoever else holds a sign-in of this account (a stolen cookie, another device) is out.
    await svc.sessions.end_all(who.account.id, keep=who.session_id)
    return RedirectResponse("/dashboard/account?changed=true", 303)
