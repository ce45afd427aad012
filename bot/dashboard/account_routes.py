"""A staff member's own account, under /dashboard/account: changing the password, turning
two-step sign-in (a code from an authenticator app) on and off, recovery codes, and the
account's recent security events. Every change to how the account is reached asks for the
password again (and the code), bot/dashboard/reauth.py."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bot.cases.models import AuditLine
from bot.dashboard.errors import AccountError
from bot.dashboard.guards import AccountForm, AccountPage
from bot.dashboard.services import DashboardServices, services
from bot.dashboard.sessions import OpenSignIn, SignedIn
from bot.dashboard.two_factor import Enrolment

router = APIRouter(prefix="/dashboard/account", include_in_schema=False)
Services = Annotated[DashboardServices, Depends(services)]
Password = Annotated[str, Form(max_length=1024)]
Code = Annotated[str, Form(max_length=32)]


def _page(
    svc: DashboardServices,
    who: SignedIn,
    changed: str = "",
    refused: str | None = None,
    enrolment: Enrolment | None = None,
    recovery: list[str] | None = None,
    events: list[AuditLine] | None = None,
    recovery_left: int | None = None,
    sign_ins: list[OpenSignIn] | None = None,
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
        enrolment=enrolment,
        recovery=recovery,
        security_events=events or [],
        recovery_left=recovery_left,
        sign_ins=sign_ins or [],
        two_factor_required=svc.require_two_factor,
    )


async def _full_page(
    svc: DashboardServices,
    who: SignedIn,
    changed: str = "",
    refused: str | None = None,
    recovery: list[str] | None = None,
) -> HTMLResponse:
    """The account page with its security events, recovery codes left and sign-ins."""
    return _page(
        svc,
        who,
        changed=changed,
        refused=refused,
        recovery=recovery,
        events=await svc.accounts.security_events(who.account),
        recovery_left=(
            await svc.two_factor.recovery_left(who.account) if who.account.two_factor else None
        ),
        sign_ins=await svc.sessions.of_account(who.account.id),
    )


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


@router.get("")
async def account(svc: Services, who: AccountPage, changed: str = "") -> HTMLResponse:
    return await _full_page(svc, who, changed=changed if changed in CHANGES else "")


CHANGES = frozenset({"password", "2fa_on", "2fa_off", "security", "signed_out"})


@router.post("/password")
async def change_password(
    svc: Services,
    who: AccountForm,
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
    return RedirectResponse("/dashboard/account?changed=password", 303)


@router.post("/2fa/begin")
async def begin_two_factor(
    request: Request, svc: Services, who: AccountForm, password: Password = ""
) -> Response:
    if who.account.two_factor:
        return RedirectResponse("/dashboard/account", 303)
    # A stolen session must not put the thief's authenticator between the owner and the
    # account: the password first.
    refused = await svc.reauth.refusal(who.account, password, "", _client(request))
    if refused:
        return await _full_page(svc, who, refused=refused)
    try:
        enrolment = await svc.two_factor.begin(who.account)
    except AccountError as exc:
        return await _full_page(svc, who, refused=str(exc))
    return _page(svc, who, enrolment=enrolment)


@router.post("/2fa/confirm")
async def confirm_two_factor(svc: Services, who: AccountForm, code: Code = "") -> Response:
    if await svc.two_factor.confirm(who.account, code):
        # Sign-ins opened with the password alone (another device, a stolen cookie) end.
        await svc.sessions.end_all(who.account.id, keep=who.session_id)
        codes = await svc.two_factor.new_recovery_codes(who.account, who.account.label)
        now_on = replace(who, account=who.account.model_copy(update={"two_factor": True}))
        return await _full_page(svc, now_on, changed="2fa_on", recovery=codes)
    enrolment = await svc.two_factor.pending(who.account)
    refused = "that code is not the one your app shows now" if enrolment else "start again"
    return _page(svc, who, refused=refused, enrolment=enrolment)


@router.post("/2fa/off")
async def turn_off_two_factor(
    request: Request, svc: Services, who: AccountForm, password: Password = "", code: Code = ""
) -> Response:
    if svc.require_two_factor:
        return await _full_page(svc, who, refused="this CareBot requires two-step sign-in")
    refused = await svc.reauth.refusal(who.account, password, code, _client(request))
    if refused:
        return await _full_page(svc, who, refused=refused)
    await svc.two_factor.turn_off(who.account)
    return RedirectResponse("/dashboard/account?changed=2fa_off", 303)


@router.post("/recovery-codes")
async def new_recovery_codes(
    request: Request, svc: Services, who: AccountForm, password: Password = "", code: Code = ""
) -> Response:
    refused = await svc.reauth.refusal(who.account, password, code, _client(request))
    if refused:
        return await _full_page(svc, who, refused=refused)
    try:
        codes = await svc.two_factor.new_recovery_codes(who.account, who.account.label)
    except AccountError as exc:
        return await _full_page(svc, who, refused=str(exc))
    return await _full_page(svc, who, recovery=codes)


@router.post("/sessions/{session_id}/end")
async def end_sign_in(svc: Services, who: AccountForm, session_id: int) -> Response:
    # Only the owner's own sign-ins, and not this one (that is "Sign out").
    if session_id != who.session_id:
        await svc.sessions.end_one(who, session_id)
    return RedirectResponse("/dashboard/account?changed=signed_out", 303)
