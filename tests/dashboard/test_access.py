"""Who may use which dashboard route, for every route the app has (a new one cannot slip by)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest
from sqlmodel import select

from bot.channels.web import create_web_app
from bot.dashboard.roles import Role
from bot.runtime import Runtime
from bot.storage.tables import PromptDraft
from tests.dashboard.live import LiveServer, csrf_of, sign_in

# Signing in: the password, then (for accounts with two-step sign-in) the code.
PUBLIC = {
    ("GET", "/dashboard/login"),
    ("POST", "/dashboard/login"),
    ("GET", "/dashboard/login/code"),
    ("POST", "/dashboard/login/code"),
}
# Every staff member's own: signing out, their account, its password and second factor.
ANY_STAFF = {
    ("POST", "/dashboard/logout"),
    ("GET", "/dashboard/account"),
    ("POST", "/dashboard/account/password"),
    ("POST", "/dashboard/account/2fa/begin"),
    ("POST", "/dashboard/account/2fa/confirm"),
    ("POST", "/dashboard/account/2fa/off"),
    ("POST", "/dashboard/account/recovery-codes"),
    ("POST", "/dashboard/account/sessions/{session_id}/end"),
}
PROMPT_CONSOLE = "/dashboard/prompts"  # operators and admins; doctors are refused
# Waiting changes to safety-critical texts: every staff member reads them, clinicians decide.
STAFF_PAGES = {("GET", "/dashboard/approvals"), ("GET", "/dashboard/approvals/{request_id}")}
APPROVALS = "/dashboard/approvals/"
# A clinician's own settings: refused to operators like the cases, but no patient data in it.
OWN_SETTINGS = {("GET", "/dashboard/telegram")}
# Besides {case_id}: a new path parameter must be added here. Request 1 is the module's.
PATH_VALUES = {"name": "answer", "request_id": "1", "session_id": "1"}
FORM = {
    "text": "hello",
    "outcome": "done",
    "disposition": "no_action",
    "source": "---\nname: answer\n---\nchanged by someone not allowed to\n",
    "base_version": "1",
    "note": "not allowed",
    "version": "1",
}


async def _never_started() -> Runtime:
    raise AssertionError("only the routes are read")


def _walk(routes: Iterable[Any]) -> Iterator[tuple[str, str]]:
    for route in routes:
        if hasattr(route, "effective_route_contexts"):  # an included router (FastAPI >= 0.16x)
            yield from _walk(route.effective_route_contexts())
        elif isinstance(getattr(route, "methods", None), set):
            yield from ((method, str(route.path)) for method in route.methods)


def dashboard_routes() -> list[tuple[str, str]]:
    """(method, path) of every route the web app serves under /dashboard."""
    app = create_web_app(_never_started)
    return sorted({(m, path) for m, path in _walk(app.routes) if path.startswith("/dashboard")})


ROUTES = dashboard_routes()
GUARDED = [r for r in ROUTES if r not in PUBLIC]
FOR_PROMPT_EDITORS = [r for r in GUARDED if r[1].startswith(PROMPT_CONSOLE)]
FOR_APPROVERS = [r for r in GUARDED if r[1].startswith(APPROVALS) and r[0] == "POST"]
FOR_ADMINS = {("GET", "/dashboard/security")}  # the security log
FOR_CLINICIANS = [
    r
    for r in GUARDED
    if r not in ANY_STAFF | STAFF_PAGES | FOR_ADMINS and r not in FOR_PROMPT_EDITORS + FOR_APPROVERS
]
EMERGENCY_CHANGE = "REQUESTED-BY-SOMEONE-ELSE"


@pytest.fixture(scope="module")
def case_id(live: LiveServer) -> int:
    """An open case, and change 1 to the emergency texts waiting for approval."""
    source = live.runtime.prompt_store.library.shipped["emergency_texts"]
    changed = source.replace("Do not wait for more", f"{EMERGENCY_CHANGE} Do not wait for more")
    asked = live.call(
        lambda rt: rt.prompt_store.publish("emergency_texts", changed, "x", "x", 1, "staff:999")
    )
    assert asked.id == 1
    return live.open_case("access-1")


@pytest.fixture(scope="module")
def operator(live: LiveServer) -> Iterator[httpx.Client]:
    live.add_staff("olly", Role.OPERATOR, "Olly Operator")
    client, res = sign_in(live.url, "olly")
    assert res.status_code == 303
    yield client
    client.close()


@pytest.fixture(scope="module")
def doctor(live: LiveServer) -> Iterator[httpx.Client]:
    live.add_staff("dana", Role.DOCTOR, "Dr Dana")
    client, res = sign_in(live.url, "dana")
    assert res.status_code == 303
    yield client
    client.close()


def _request(
    client: httpx.Client, method: str, path: str, case_id: int, data: dict[str, str]
) -> httpx.Response:
    url = path.replace("{case_id}", str(case_id))
    for name, value in PATH_VALUES.items():
        url = url.replace("{" + name + "}", value)
    assert "{" not in url, f"{path}: add its path parameters to PATH_VALUES"
    if url.endswith("/events"):
        with client.stream(method, url) as res:
            res.read() if res.status_code != 200 else next(res.iter_text())
            return res
    return client.request(method, url, data=data if method == "POST" else None)


def test_the_routes_are_the_ones_expected() -> None:
    # Adding a route means deciding who may use it: this list and the tests below say so.
    assert {path for _m, path in ROUTES} >= {
        "/dashboard",
        "/dashboard/events",
        "/dashboard/cases/{case_id}",
        "/dashboard/cases/{case_id}/events",
        "/dashboard/cases/{case_id}/claim",
        "/dashboard/cases/{case_id}/reply",
        "/dashboard/cases/{case_id}/resolve",
        "/dashboard/cases/{case_id}/break-glass",
        "/dashboard/cases/{case_id}/take-over",
        "/dashboard/logout",
        "/dashboard/prompts",
        "/dashboard/prompts/{name}",
        "/dashboard/prompts/{name}/publish",
        "/dashboard/prompts/{name}/history",
        "/dashboard/prompts/{name}/rollback",
        "/dashboard/prompts/{name}/requests/{request_id}/withdraw",
        "/dashboard/approvals",
        "/dashboard/approvals/{request_id}",
        "/dashboard/approvals/{request_id}/approve",
        "/dashboard/approvals/{request_id}/reject",
        "/dashboard/telegram",
        "/dashboard/telegram/code",
        "/dashboard/telegram/unlink",
        "/dashboard/account",
        "/dashboard/account/password",
        "/dashboard/account/2fa/begin",
        "/dashboard/account/2fa/confirm",
        "/dashboard/account/2fa/off",
        "/dashboard/account/recovery-codes",
        "/dashboard/account/sessions/{session_id}/end",
        "/dashboard/security",
    }
    assert set(ROUTES) >= PUBLIC


@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_anonymous_is_sent_to_login_or_refused(
    live: LiveServer, case_id: int, method: str, path: str
) -> None:
    with httpx.Client(base_url=live.url, follow_redirects=False) as anonymous:
        res = _request(anonymous, method, path, case_id, FORM)
    if method == "GET" and not path.endswith("/events"):
        assert res.status_code == 303
        assert res.headers["location"].startswith("/dashboard/login?next=/dashboard")
    else:
        assert res.status_code == 401
    assert "Chief complaint" not in res.text and "chest pain" not in res.text
    assert "Guideline passages" not in res.text  # nor a prompt's text
    _nothing_changed(live, case_id)


@pytest.mark.parametrize(("method", "path"), FOR_CLINICIANS)
def test_operators_cannot_read_cases(
    live: LiveServer, operator: httpx.Client, case_id: int, method: str, path: str
) -> None:
    token = csrf_of(operator.get("/dashboard").text)  # the sign-out form on the 403 page
    res = _request(operator, method, path, case_id, {"csrf_token": token, "text": "hello"})
    assert res.status_code == 403
    assert "chest pain" not in res.text
    if not path.endswith("/events"):
        assert "operators cannot read transcripts unless they are also doctors" in res.text


@pytest.mark.parametrize(("method", "path"), FOR_APPROVERS)
def test_operators_cannot_approve_safety_critical_changes(
    live: LiveServer, operator: httpx.Client, case_id: int, method: str, path: str
) -> None:
    token = csrf_of(operator.get("/dashboard/prompts").text)
    res = _request(operator, method, path, case_id, {**FORM, "csrf_token": token})
    assert res.status_code == 403 and "only clinicians and admins can" in res.text
    _nothing_changed(live, case_id)


@pytest.mark.parametrize(("method", "path"), sorted(STAFF_PAGES))
def test_every_staff_member_reads_the_waiting_changes(
    live: LiveServer,
    operator: httpx.Client,
    doctor: httpx.Client,
    case_id: int,
    method: str,
    path: str,
) -> None:
    for client in (operator, doctor):
        res = _request(client, method, path, case_id, {})
        assert res.status_code == 200 and "emergency_texts" in res.text
        assert "chest pain" not in res.text  # no patient data
    assert EMERGENCY_CHANGE in _request(doctor, method, APPROVALS + "1", case_id, {}).text


def test_every_staff_member_opens_their_own_account_page(
    operator: httpx.Client, doctor: httpx.Client
) -> None:
    for client in (operator, doctor):
        res = client.get("/dashboard/account")
        assert res.status_code == 200 and "Change your password" in res.text
        assert "chest pain" not in res.text


@pytest.mark.parametrize(("method", "path"), FOR_PROMPT_EDITORS)
def test_doctors_cannot_use_the_prompt_console(
    live: LiveServer, doctor: httpx.Client, case_id: int, method: str, path: str
) -> None:
    token = csrf_of(doctor.get("/dashboard").text)  # the doctor's own, valid token
    res = _request(doctor, method, path, case_id, {**FORM, "csrf_token": token})
    assert res.status_code == 403
    assert "only operators and admins can" in res.text
    assert "Guideline passages" not in res.text
    _nothing_changed(live, case_id)


@pytest.mark.parametrize(("method", "path"), [r for r in FOR_PROMPT_EDITORS if r[0] == "GET"])
def test_operators_can_open_the_prompt_console(
    live: LiveServer, operator: httpx.Client, case_id: int, method: str, path: str
) -> None:
    res = _request(operator, method, path, case_id, {})
    assert res.status_code == 200
    assert "answer" in res.text and "crushing chest pain" not in res.text  # no patient data


@pytest.mark.parametrize(
    ("method", "path"), [r for r in FOR_CLINICIANS if r[0] == "GET" and r not in OWN_SETTINGS]
)
def test_doctors_can_read(
    live: LiveServer, doctor: httpx.Client, case_id: int, method: str, path: str
) -> None:
    res = _request(doctor, method, path, case_id, {})
    assert res.status_code == 200
    if path.endswith("/events"):
        assert res.headers["content-type"].startswith("text/event-stream")
    else:
        assert "chest pain" in res.text


@pytest.mark.parametrize("token", ["", "forged-token"])
@pytest.mark.parametrize(("method", "path"), [r for r in GUARDED if r[0] == "POST"])
def test_a_post_without_the_right_csrf_token_is_refused(
    live: LiveServer,
    doctor: httpx.Client,
    operator: httpx.Client,
    case_id: int,
    method: str,
    path: str,
    token: str,
) -> None:
    # Each route is tried by someone its role lets in: only the token is wrong.
    client = operator if (method, path) in FOR_PROMPT_EDITORS else doctor
    data = {**FORM, "csrf_token": token} if token else FORM
    res = _request(client, method, path, case_id, data)
    assert res.status_code == 403 and "form has expired" in res.text
    # Nothing happened: still signed in, the case still open, no message sent, no prompt
    # published and no draft saved.
    assert client.get("/dashboard/login").status_code == 303  # signed in: sent on
    _nothing_changed(live, case_id)


def _nothing_changed(live: LiveServer, case_id: int) -> None:
    detail = live.call(lambda rt: rt.cases.store.detail(case_id))
    assert detail is not None and detail.case.status.value == "open"
    assert not any(line.role == "doctor" for line in detail.transcript)
    history = live.call(lambda rt: rt.prompt_store.history("answer"))
    assert [v.version for v in history] == [1]
    drafts = live.call(lambda rt: rt.storage.run(lambda s: s.exec(select(PromptDraft)).all()))
    assert drafts == []
    waiting = live.call(lambda rt: rt.prompt_store.reviews.requests())
    assert [r.id for r in waiting] == [1]  # neither approved, turned down nor withdrawn
    assert [
        v.version for v in live.call(lambda rt: rt.prompt_store.history("emergency_texts"))
    ] == [1]


def test_the_login_form_needs_its_csrf_token(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url) as client:
        res = client.post("/dashboard/login", data={"username": "dana", "password": "x" * 12})
        assert res.status_code == 403
        form = client.get("/dashboard/login")
        # The token must match the cookie set with this form: another form's token fails.
        other = httpx.get(f"{live.url}/dashboard/login")
        res = client.post(
            "/dashboard/login",
            data={"username": "dana", "password": "x" * 12, "csrf_token": csrf_of(other.text)},
        )
        assert res.status_code == 403
        assert csrf_of(form.text) != csrf_of(other.text)


def test_pages_forbid_framing_and_foreign_scripts(live: LiveServer, doctor: httpx.Client) -> None:
    res = doctor.get("/dashboard")
    assert res.headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in res.headers["content-security-policy"]
    assert res.headers["cache-control"] == "no-store"


def test_after_login_the_browser_goes_where_it_was_going(live: LiveServer, case_id: int) -> None:
    client, res = sign_in(live.url, "dana", next_=f"/dashboard/cases/{case_id}")
    assert res.headers["location"] == f"/dashboard/cases/{case_id}"
    client.close()
    client, res = sign_in(live.url, "dana", next_="//evil.example/phish")
    assert res.headers["location"] == "/dashboard"
    client.close()


def test_only_administrators_read_the_security_log(
    live: LiveServer, operator: httpx.Client, doctor: httpx.Client, case_id: int
) -> None:
    for client in (operator, doctor):
        res = client.get("/dashboard/security")
        assert res.status_code == 403 and "Only administrators" in res.text
        assert 'href="/dashboard/security"' not in client.get("/dashboard/account").text
    live.add_staff("ivy", Role.ADMIN, "Ivy Admin")
    admin, _ = sign_in(live.url, "ivy")
    with closing(admin):
        # A break-glass and a take-over elsewhere show up, with who did them.
        page = admin.get("/dashboard/security")
        assert page.status_code == 200 and 'href="/dashboard/security"' in page.text
        assert "Security log" in page.text and "in the last 24 hours" in page.text
