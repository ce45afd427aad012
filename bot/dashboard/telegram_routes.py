"""Linking a clinician's staff account to their Telegram account, under /dashboard/telegram."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bot.dashboard.guards import ClinicianForm, ClinicianPage, Denied
from bot.dashboard.services import DashboardServices, services
from bot.dashboard.sessions import SignedIn
from bot.dashboard.telegram_link import LinkCode, LinkRefused

router = APIRouter(prefix="/dashboard/telegram", include_in_schema=False)
Services = Annotated[DashboardServices, Depends(services)]


def _page(
    svc: DashboardServices,
    who: SignedIn,
    code: LinkCode | None = None,
    unlinked: bool = False,
    refused: str | None = None,
) -> HTMLResponse:
    return svc.pages.render(
        "telegram.html",
        status=422 if refused else 200,
        refused=refused,
        page="telegram",
        events=None,
        who=who,
        title="Telegram",
        code=code,
        unlinked=unlinked,
        group=svc.doctors_chat_configured,
    )


@router.get("")
async def telegram(svc: Services, who: ClinicianPage, unlinked: bool = False) -> HTMLResponse:
    return _page(svc, who, unlinked=unlinked)


@router.post("/code")
async def new_code(
    request: Request,
    svc: Services,
    who: ClinicianForm,
    password: Annotated[str, Form(max_length=1024)] = "",
    code: Annotated[str, Form(max_length=32)] = "",
) -> HTMLResponse:
    # A link acts on cases long after a stolen sign-in ends: the password (and code) again.
    client = request.client.host if request.client else ""
    refused = await svc.reauth.refusal(who.account, password, code, client)
    if refused:
        return _page(svc, who, refused=refused)
    try:
        link = await svc.links.new_code(who.account)
    except LinkRefused as exc:
        raise Denied(403, str(exc), who=who) from exc
    return _page(svc, who, code=link)


@router.post("/unlink")
async def unlink(svc: Services, who: ClinicianForm) -> Response:
    await svc.links.unlink(who.account, who.account.label)
    return RedirectResponse("/dashboard/telegram?unlinked=true", 303)
