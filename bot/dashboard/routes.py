"""The dashboard's routes: sign in and out, the queue, a case, its actions, live updates."""

from __future__ import annotations

import math
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from bot.dashboard import csrf, live
from bot.dashboard.accounts import StaffAccount
from bot.dashboard.actions import Disposition, Notice
from bot.dashboard.guards import ClinicianForm, ClinicianPage, ClinicianStream, Denied, StaffForm
from bot.dashboard.guards import signed_in as current_sign_in
from bot.dashboard.services import DashboardServices, services
from bot.dashboard.sessions import clear_session_cookie, set_session_cookie
from bot.dashboard.views import case_page
from bot.models import utcnow

router = APIRouter(prefix="/dashboard", include_in_schema=False)
Services = Annotated[DashboardServices, Depends(services)]
NextQuery = Annotated[str, Query(alias="next", max_length=512)]
SAFE_NEXT = re.compile(r"/dashboard(/[A-Za-z0-9_/-]*)?")  # never another site


def _https(request: Request) -> bool:
    return request.url.scheme == "https"


def _next(target: str) -> str:
    return target if SAFE_NEXT.fullmatch(target) else "/dashboard"


def _landing(target: str, account: StaffAccount) -> str:
    # The queue is for clinicians: an operator signing in lands on the prompt console.
    if target == "/dashboard" and not account.reads_cases and account.edits_prompts:
        return "/dashboard/prompts"
    return target


def _login_form(
    request: Request,
    svc: DashboardServices,
    next_: str,
    username: str = "",
    failed: bool = False,
    wait_s: int = 0,
) -> HTMLResponse:
    token = csrf.new_token()
    response = svc.pages.render(
        "login.html",
        status=429 if wait_s else 401 if failed else 200,
        page="login",
        events=None,
        who=None,
        title="Sign in",
        csrf_token=token,
        next=_next(next_),
        username=username,
        failed=failed,
        wait_minutes=math.ceil(wait_s / 60) if wait_s else 0,
    )
    if wait_s:
        response.headers["Retry-After"] = str(wait_s)
    csrf.set_login_cookie(response, token, _https(request))
    return response


@router.get("/login")
async def login_page(request: Request, svc: Services, next_: NextQuery = "/dashboard") -> Response:
    who = await current_sign_in(request)
    if who is not None:
        return RedirectResponse(_landing(_next(next_), who.account), 303)
    return _login_form(request, svc, next_)


@router.post("/login")
async def login(
    request: Request,
    svc: Services,
    username: Annotated[str, Form(max_length=256)] = "",
    password: Annotated[str, Form(max_length=4096)] = "",
    csrf_token: Annotated[str, Form()] = "",
    next_: Annotated[str, Form(alias="next", max_length=512)] = "/dashboard",
) -> Response:
    if not csrf.matches(request.cookies.get(csrf.LOGIN_COOKIE), csrf_token):
        raise Denied(403, "The sign-in form has expired. Reload the page and try again.")
    client = request.client.host if request.client else ""
    # Counted before the password is checked: a flood never reaches argon2.
    wait_s = svc.throttle.admit(client, username)
    if wait_s:
        return _login_form(request, svc, next_, username, wait_s=wait_s)
    result = await svc.accounts.authenticate(username, password, client)
    if result.account is None:
        # One answer for every refusal (wrong, unknown, locked, disabled): the page never
        # tells a stranger which usernames exist.
        svc.throttle.failed(client, username)
        return _login_form(request, svc, next_, username, failed=True)
    svc.throttle.succeeded(client, username)
    response = RedirectResponse(_landing(_next(next_), result.account), 303)
    set_session_cookie(response, await svc.sessions.start(result.account), _https(request))
    response.delete_cookie(csrf.LOGIN_COOKIE, path="/dashboard/login")
    return response


@router.post("/logout")
async def logout(request: Request, svc: Services, who: StaffForm) -> Response:
    await svc.sessions.end(who)
    response = RedirectResponse("/dashboard/login", 303)
    clear_session_cookie(response, _https(request))
    return response


@router.get("")
async def queue(svc: Services, who: ClinicianPage) -> HTMLResponse:
    cases = await svc.cases.store.queue()
    return svc.pages.render(
        "queue.html",
        page="queue",
        events="/dashboard/events",
        who=who,
        title="Queue",
        cases=cases,
        now=utcnow(),
    )


@router.get("/events")
async def queue_events(request: Request, svc: Services, who: ClinicianStream) -> Response:
    return _event_stream(request, svc, None)


@router.get("/cases/{case_id}")
async def case(
    svc: Services, who: ClinicianPage, case_id: int, notice: Notice | None = None
) -> HTMLResponse:
    detail = await svc.cases.store.detail(case_id)
    if detail is None:
        raise Denied(404, f"There is no case #{case_id}.", who=who)
    view = await case_page(detail, who.account, svc.accounts, svc.rules)
    return svc.pages.render(
        "case.html",
        page="case",
        events=f"/dashboard/cases/{case_id}/events",
        who=who,
        title=f"Case #{case_id}",
        view=view,
        notice=notice,
        now=utcnow(),
    )


@router.get("/cases/{case_id}/events")
async def case_events(
    request: Request, svc: Services, who: ClinicianStream, case_id: int
) -> Response:
    return _event_stream(request, svc, case_id)


@router.post("/cases/{case_id}/claim")
async def claim(svc: Services, who: ClinicianForm, case_id: int) -> Response:
    return _back(case_id, await svc.actions.claim(case_id, who.account))


@router.post("/cases/{case_id}/reply")
async def reply(
    svc: Services, who: ClinicianForm, case_id: int, text: Annotated[str, Form()] = ""
) -> Response:
    return _back(case_id, await svc.actions.reply(case_id, who.account, text))


@router.post("/cases/{case_id}/resolve")
async def resolve(
    svc: Services,
    who: ClinicianForm,
    case_id: int,
    outcome: Annotated[str, Form()] = "",
    disposition: Annotated[Disposition, Form()] = Disposition.OTHER,
) -> Response:
    return _back(case_id, await svc.actions.resolve(case_id, who.account, outcome, disposition))


def _back(case_id: int, notice: Notice) -> Response:
    return RedirectResponse(f"/dashboard/cases/{case_id}?notice={notice.value}", 303)


def _event_stream(request: Request, svc: DashboardServices, case_id: int | None) -> Response:
    async def still_signed_in() -> bool:
        return await current_sign_in(request, touch=False) is not None

    return StreamingResponse(
        live.stream(svc.cases.events, still_signed_in, svc.heartbeat_s, case_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
