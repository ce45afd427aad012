"""Administrators' security log, under /dashboard/security: who broke the glass on a case,
took one over, linked Telegram, changed a second factor, reset a password or was locked out,
newest first, with who did it. The tab shows how many happened in the last day."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from bot.dashboard.guards import AdminPage
from bot.dashboard.services import DashboardServices, services
from bot.models import utcnow

router = APIRouter(prefix="/dashboard/security", include_in_schema=False)
Services = Annotated[DashboardServices, Depends(services)]
RECENT = timedelta(days=1)


@router.get("")
async def security_log(svc: Services, who: AdminPage) -> HTMLResponse:
    events = await svc.accounts.security_log()
    names = {a.label: a.display_name for a in await svc.accounts.all()}
    recent = utcnow() - RECENT
    return svc.pages.render(
        "security.html",
        page="security",
        events=None,
        who=who,
        title="Security log",
        log=events,
        names=names,
        recent=sum(1 for e in events if e.at > recent),
    )
