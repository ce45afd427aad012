"""The dashboard's routes: sign in and out, the queue, a case, its actions, live updates."""

from __future__ import annotations

import math
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from bot.cases.models import CaseView
from bot.dashboard import csrf, live
from bot.dashboard.accounts import StaffAccount
from bot.dashboard.actions import Disposition, Notice
from bot.dashboard.case_reads import CLOSED, REASON_MAX, REASON_MIN, GlassRefused
from bot.dashboard.guards import (
    AccountForm,
    ClinicianForm,
    ClinicianPage,
    ClinicianStream,
    Denied,
)
from bot.dashboard.guards import signed_in as current_sign_in
from bot.dashboard.known_devices import cookie_name as device_cookie
from bot.dashboard.roles import Role
from bot.dashboard.services import DashboardServices, services
from bot.dashboard.sessions import (
    CHALLENGE_COOKIE,
    SignedIn,
    clear_challenge_cookie,
    clear_session_cookie,
    set_challenge_cookie,
    set_session_cookie,
)
from bot.dashboard.two_factor import ChallengeOutcome
from bot.dashboard.views import case_page
from bot.models import utcnow

router = APIRouter(prefix="/dashboard", include_in_schema=False)
Services = Annotated[DashboardServices, Depends(services)]
NextQuery = Annotated[str, Query(alias="next", max_length=512)]
SAFE_NEXT = re.compile(r"/dashboard(/[A-Za-z0-9_/-]*)?")  # never another site


def _https(request: Request) -> bool:
    return request.url.scheme == "https"


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def _login_client(request: Request, csrf_token: str) -> str:
    """The address of a sign-in form's sender, once the form's CSRF token is right."""
    if not csrf.matches(request.cookies.get(csrf.LOGIN_COOKIE), csrf_token):
        raise Denied(403, "The sign-in form has expired. Reload the page and try again.")
    return _client(request)


async def _known_device(request: Request, svc: DashboardServices, username: str) -> str | None:
    """The key of this browser when it signed in to `username`'s account before."""
    known = svc.devices.known(request.cookies.get(device_cookie(request)))
    if known is None or known[0] != await svc.accounts.id_of(username):
        return None
    return known[1]


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
    step: str = "password",
    code_over: bool = False,
) -> HTMLResponse:
    token = csrf.new_token()
    response = svc.pages.render(
        "login.html" if step == "password" else "login_code.html",
        status=429 if wait_s else 401 if failed or code_over else 200,
        page="login",
        events=None,
        who=None,
        title="Sign in",
        csrf_token=token,
        next=_next(next_),
        username=username,
        failed=failed,
        code_over=code_over,
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
    client = _login_client(request, csrf_token)
    device = await _known_device(request, svc, username)
    # Counted before the password is checked: a flood never reaches argon2.
    wait_s = await svc.throttle.admit(client, username, device)
    if wait_s:
        return _login_form(request, svc, next_, username, wait_s=wait_s)
    result = await svc.accounts.authenticate(
        username, password, client, known_device=device is not None
    )
    if result.account is None:
        # One answer for every refusal (wrong, unknown, locked, disabled): the page never
        # tells a stranger which usernames exist.
        await svc.throttle.failed(client, username, device)
        return _login_form(request, svc, next_, username, failed=True)
    await svc.throttle.succeeded(client, username, device)
    if result.account.two_factor:
        # The password is right; the sign-in begins only once a code from the app is too.
        response = RedirectResponse(f"/dashboard/login/code?next={_next(next_)}", 303)
        token = await svc.two_factor.challenge(result.account)
        set_challenge_cookie(response, token, _https(request))
        return response
    return await _signed_in(request, svc, result.account, next_)


async def _signed_in(
    request: Request, svc: DashboardServices, account: StaffAccount, next_: str
) -> Response:
    target = _landing(_next(next_), account)
    previous = await svc.accounts.previous_sign_in(account)
    if previous is not None and await svc.accounts.security_events(account, since=previous):
        # Told at once: a password reset, a new Telegram link or a second factor turned off
        # since the owner last signed in may not have been the owner.
        target = "/dashboard/account?changed=security"
    response = RedirectResponse(target, 303)
    set_session_cookie(response, await svc.sessions.start(account), _https(request))
    svc.devices.remember(response, request, account.id)
    response.delete_cookie(csrf.LOGIN_COOKIE, path="/dashboard/login")
    clear_challenge_cookie(response, _https(request))
    return response


@router.get("/login/code")
async def login_code_page(
    request: Request, svc: Services, next_: NextQuery = "/dashboard"
) -> Response:
    if not request.cookies.get(CHALLENGE_COOKIE):
        return RedirectResponse(f"/dashboard/login?next={_next(next_)}", 303)
    return _login_form(request, svc, next_, step="code")


@router.post("/login/code")
async def login_code(
    request: Request,
    svc: Services,
    code: Annotated[str, Form(max_length=32)] = "",
    csrf_token: Annotated[str, Form()] = "",
    next_: Annotated[str, Form(alias="next", max_length=512)] = "/dashboard",
) -> Response:
    client = _login_client(request, csrf_token)
    known = svc.devices.known(request.cookies.get(device_cookie(request)))
    device = known[1] if known else None
    # Codes count towards the address's attempts (a known device's: towards its own).
    wait_s = await svc.throttle.admit(client, "", device)
    if wait_s:
        return _login_form(request, svc, next_, wait_s=wait_s, step="code")
    token = request.cookies.get(CHALLENGE_COOKIE, "")
    result = await svc.two_factor.answer(token, code, client, known_device=device is not None)
    if result.outcome is ChallengeOutcome.PASSED and result.account is not None:
        return await _signed_in(request, svc, result.account, next_)
    if result.outcome is ChallengeOutcome.WRONG:
        return _login_form(request, svc, next_, failed=True, step="code")
    response = _login_form(request, svc, next_, code_over=True)
    clear_challenge_cookie(response, _https(request))
    return response


@router.post("/logout")
async def logout(request: Request, svc: Services, who: AccountForm) -> Response:
    await svc.sessions.end(who)
    response = RedirectResponse("/dashboard/login", 303)
    clear_session_cookie(response, _https(request))
    return response


@router.get("")
async def queue(request: Request, svc: Services, who: ClinicianPage) -> HTMLResponse:
    cases = await svc.cases.store.queue()
    # Each row shows the first line of the case's summary: a read of that case.
    await svc.reads.shown([c.id for c in cases], who.account.label, "queue", _client(request))
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
    request: Request,
    svc: Services,
    who: ClinicianPage,
    case_id: int,
    notice: Notice | None = None,
) -> HTMLResponse:
    detail = await svc.cases.store.detail(case_id)
    if detail is None:
        raise Denied(404, f"There is no case #{case_id}.", who=who)
    if not await svc.reads.open_to(detail.case, who.account):
        return _break_glass_page(svc, who, detail.case)
    await svc.reads.record(case_id, who.account, "page", _client(request))
    reads = await svc.reads.of_case(case_id) if who.account.role is Role.ADMIN else None
    view = await case_page(detail, who.account, svc.accounts, svc.rules, reads)
    return svc.pages.render(
        "case.html",
        page="case",
        events=f"/dashboard/cases/{case_id}/events",
        who=who,
        title=f"Case #{case_id}",
        view=view,
        notice=notice,
        now=utcnow(),
        reason_min=REASON_MIN,
        reason_max=REASON_MAX,
    )


@router.get("/cases/{case_id}/events")
async def case_events(
    request: Request, svc: Services, who: ClinicianStream, case_id: int
) -> Response:
    case = await svc.cases.store.view(case_id)
    if case is None:
        raise Denied(404, f"There is no case #{case_id}.", who=who)
    if not await svc.reads.open_to(case, who.account):
        raise Denied(403, CLOSED_CASE, who=who)
    await svc.reads.record(case_id, who.account, "stream", _client(request))
    return _event_stream(request, svc, case_id)


CLOSED_CASE = "This case is closed: open it from its page, saying why."


def _break_glass_page(
    svc: DashboardServices, who: SignedIn, case: CaseView, refused: str | None = None
) -> HTMLResponse:
    # Nothing of the patient's is on this page: not the summary, not the pseudonym.
    return svc.pages.render(
        "break_glass.html",
        status=422 if refused else 403,
        page="case",
        events=None,
        who=who,
        title=f"Case #{case.id} is closed",
        case_id=case.id,
        status_word=case.status.value,
        refused=refused,
        reason_min=REASON_MIN,
        reason_max=REASON_MAX,
    )


@router.post("/cases/{case_id}/break-glass")
async def break_glass(
    svc: Services,
    who: ClinicianForm,
    case_id: int,
    reason: Annotated[str, Form(max_length=4096)] = "",
) -> Response:
    case = await svc.cases.store.view(case_id)
    if case is None:
        raise Denied(404, f"There is no case #{case_id}.", who=who)
    if case.status not in CLOSED:
        return RedirectResponse(f"/dashboard/cases/{case_id}", 303)
    try:
        await svc.reads.break_glass(case_id, who.account, reason)
    except GlassRefused as exc:
        return _break_glass_page(svc, who, case, refused=str(exc))
    return RedirectResponse(f"/dashboard/cases/{case_id}", 303)


@router.post("/cases/{case_id}/claim")
async def claim(svc: Services, who: ClinicianForm, case_id: int) -> Response:
    return _back(case_id, await svc.actions.claim(case_id, who.account))


@router.post("/cases/{case_id}/take-over")
async def take_over(
    svc: Services,
    who: ClinicianForm,
    case_id: int,
    reason: Annotated[str, Form(max_length=4096)] = "",
) -> Response:
    return _back(case_id, await svc.actions.take_over(case_id, who.account, reason))


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
