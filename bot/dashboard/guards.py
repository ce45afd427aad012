"""Who may use which dashboard route: signed in, the right role, and a CSRF token on POSTs.

A page asked for without a sign-in redirects to the login page; a POST or a live stream
without one gets 401. A signed-in operator gets 403 on everything that shows patients; a
doctor gets 403 in the prompt console (operators and admins change what CareBot says), and
only clinicians and admins approve changes to safety-critical texts (every staff member may
read the waiting changes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Form, Request

from bot.dashboard import csrf
from bot.dashboard.roles import ADMINS, CLINICIANS, PROMPT_EDITORS, Role
from bot.dashboard.services import services
from bot.dashboard.sessions import COOKIE, SignedIn

EVERYONE = frozenset(Role)
NOT_FOR_OPERATORS = (
    "Your account cannot open patient cases: operators cannot read transcripts unless they "
    "are also doctors. Ask an administrator if you need this."
)
NOT_AN_APPROVER = (
    "Your account cannot approve changes to safety-critical texts: only clinicians and admins "
    "can, and never their own change."
)
NOT_AN_ADMIN = "Only administrators see the security log."
NOT_FOR_DOCTORS = (
    "Your account cannot change CareBot's prompts: only operators and admins can. Ask an "
    "administrator if you need this."
)


NO_SECOND_FACTOR = (
    "This CareBot requires two-step sign-in for every staff account. Set it up on your "
    "account page first."
)
ACCOUNT_PAGE = "/dashboard/account"


class Denied(Exception):
    """A request the dashboard refuses; `to_login` sends the browser to the login page,
    `to` to another page."""

    def __init__(
        self,
        status: int,
        message: str,
        to_login: bool = False,
        who: SignedIn | None = None,
        to: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.to_login, self.who = status, message, to_login, who
        self.to = to


async def signed_in(request: Request, touch: bool = True) -> SignedIn | None:
    """Return who holds the request's sign-in cookie, if anyone."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    return await services(request).sessions.resolve(token, touch)


def _allowed(
    request: Request,
    who: SignedIn | None,
    roles: frozenset[Role],
    page: bool,
    refusal: str,
    own_account: bool = False,
) -> SignedIn:
    if who is None:
        raise Denied(401, "Please sign in to the dashboard.", to_login=page)
    if who.account.role not in roles:
        raise Denied(403, refusal, who=who)
    # Where the deployment requires a second factor, an account without one may only set
    # it up (or sign out).
    if not own_account and not who.account.two_factor and services(request).require_two_factor:
        raise Denied(403, NO_SECOND_FACTOR, who=who, to=ACCOUNT_PAGE if page else None)
    return who


REFRESH_HEADER = "x-carebot-refresh"  # set by dashboard.js when a page updates itself


def _page(
    roles: frozenset[Role], refusal: str = NOT_FOR_OPERATORS, own_account: bool = False
) -> Callable[[Request], Awaitable[SignedIn]]:
    async def check(request: Request) -> SignedIn:
        # A page refreshing itself is not the person acting: it does not keep a sign-in alive.
        touch = REFRESH_HEADER not in request.headers
        who = await signed_in(request, touch)
        return _allowed(request, who, roles, True, refusal, own_account)

    return check


def _stream(roles: frozenset[Role]) -> Callable[[Request], Awaitable[SignedIn]]:
    async def check(request: Request) -> SignedIn:
        # A stream is not the person acting: it does not keep an idle sign-in alive.
        who = await signed_in(request, touch=False)
        return _allowed(request, who, roles, False, NOT_FOR_OPERATORS)

    return check


def _form(
    roles: frozenset[Role], refusal: str = NOT_FOR_OPERATORS, own_account: bool = False
) -> Callable[..., Awaitable[SignedIn]]:
    async def check(
        request: Request, csrf_token: Annotated[str, Form(alias=csrf.FIELD)] = ""
    ) -> SignedIn:
        who = _allowed(request, await signed_in(request), roles, False, refusal, own_account)
        if not csrf.matches(who.csrf_token, csrf_token):
            raise Denied(
                403, "This form has expired. Go back, reload the page and try again.", who=who
            )
        return who

    return check


ClinicianPage = Annotated[SignedIn, Depends(_page(CLINICIANS))]
ClinicianStream = Annotated[SignedIn, Depends(_stream(CLINICIANS))]
ClinicianForm = Annotated[SignedIn, Depends(_form(CLINICIANS))]
StaffPage = Annotated[SignedIn, Depends(_page(EVERYONE))]
StaffForm = Annotated[SignedIn, Depends(_form(EVERYONE))]
# A staff member's own account and signing out: open even before a required second factor.
AccountPage = Annotated[SignedIn, Depends(_page(EVERYONE, own_account=True))]
AccountForm = Annotated[SignedIn, Depends(_form(EVERYONE, own_account=True))]
ApproverForm = Annotated[SignedIn, Depends(_form(CLINICIANS, NOT_AN_APPROVER))]
PromptPage = Annotated[SignedIn, Depends(_page(PROMPT_EDITORS, NOT_FOR_DOCTORS))]
PromptForm = Annotated[SignedIn, Depends(_form(PROMPT_EDITORS, NOT_FOR_DOCTORS))]
AdminPage = Annotated[SignedIn, Depends(_page(ADMINS, NOT_AN_ADMIN))]
