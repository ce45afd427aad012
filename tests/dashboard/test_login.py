"""Signing in and out of the dashboard over HTTP: cookies, lockout, disabled accounts, audit."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, col, select

from bot.config import load_settings
from bot.dashboard.accounts import StaffAccounts
from bot.dashboard.roles import Role
from bot.runtime import Runtime
from bot.storage.tables import AuditEvent, StaffSession
from tests.dashboard.live import PASSWORD, LiveServer, csrf_of, serving, sign_in
from tests.fakes import scripted

GENERIC = "the username or password is wrong, or the account cannot sign in now"


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, guideline_index_dir: Path
) -> Iterator[LiveServer]:
    """The web app with the shipped sign-in limits (the other modules raise them)."""
    limits = load_settings().dashboard_login_attempts_per_client
    folder = tmp_path_factory.mktemp("login")
    with serving(
        folder, guideline_index_dir, scripted("ok"), dashboard_login_attempts_per_client=limits
    ) as server:
        yield server


def audit(live: LiveServer, staff_id: int | None = None) -> list[AuditEvent]:
    async def read(rt: Runtime) -> list[AuditEvent]:
        def work(s: Session) -> list[AuditEvent]:
            query = select(AuditEvent).where(col(AuditEvent.action).startswith("staff."))
            if staff_id is not None:
                query = query.where(AuditEvent.subject_id == str(staff_id))
            return list(s.exec(query.order_by(col(AuditEvent.id))).all())

        return await rt.storage.run(work)

    return live.call(read)


def sessions_of(live: LiveServer, staff_id: int) -> int:
    async def count(rt: Runtime) -> int:
        return await rt.storage.run(
            lambda s: len(
                s.exec(select(StaffSession).where(StaffSession.staff_id == staff_id)).all()
            )
        )

    return live.call(count)


def test_sign_in_sets_a_strict_http_only_cookie(live: LiveServer) -> None:
    ada = live.add_staff("ada", Role.DOCTOR, "Dr Ada")
    client, res = sign_in(live.url, "ADA ")  # usernames ignore case and spaces around
    assert res.status_code == 303 and res.headers["location"] == "/dashboard"
    cookie = next(h for h in res.headers.get_list("set-cookie") if "carebot_session=" in h)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/dashboard" in cookie
    assert "Secure" not in cookie  # plain http on loopback; https requests get Secure
    page = client.get("/dashboard")
    assert page.status_code == 200 and "Dr Ada" in page.text
    assert [e.action for e in audit(live, ada.id)][-1] == "staff.login"
    client.close()


def test_wrong_password_and_unknown_user_get_the_same_answer(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    live.add_staff("bea", Role.DOCTOR, "Dr Bea")
    caplog.set_level(logging.DEBUG)
    _, wrong = sign_in(live.url, "bea", "not-the-password-1")
    _, unknown = sign_in(live.url, "nobody-here", "not-the-password-2")
    for res in (wrong, unknown):
        assert res.status_code == 401 and GENERIC in res.text
        assert "carebot_session" not in res.headers.get("set-cookie", "")
    events = audit(live)
    assert "not-the-password" not in str([e.details for e in events]) + caplog.text
    assert "nobody-here" not in str([(e.actor, e.subject_id, e.details) for e in events])
    assert {e.details["reason"] for e in events if e.action == "staff.login_failed"} >= {
        "wrong_password",
        "unknown_user",
    }


def test_five_wrong_passwords_make_this_address_wait_without_revealing_anything(
    live: LiveServer,
) -> None:
    cy = live.add_staff("cy", Role.DOCTOR, "Dr Cy")
    answers = [sign_in(live.url, "cy", f"wrong password {i}")[1] for i in range(5)]
    assert all(r.status_code == 401 and GENERIC in r.text for r in answers)
    assert not any("locked" in r.text or "disabled" in r.text for r in answers)
    before = len(audit(live, cy.id))
    # The sixth attempt from here, even with the right password, waits: before argon2 runs.
    _, res = sign_in(live.url, "cy", PASSWORD)
    assert res.status_code == 429 and "Too many sign-in attempts from here" in res.text
    assert 0 < int(res.headers["retry-after"]) <= 15 * 60 and "Wait 15 min" in res.text
    assert sessions_of(live, cy.id) == 0
    assert len(audit(live, cy.id)) == before  # no password was checked, nothing recorded
    actions = [e.action for e in audit(live, cy.id)]
    assert "staff.locked" not in actions  # the account itself is not locked for others


def test_a_disabled_account_cannot_sign_in_and_its_sign_ins_end(live: LiveServer) -> None:
    dee = live.add_staff("dee", Role.DOCTOR, "Dr Dee")
    client, _ = sign_in(live.url, "dee")
    assert client.get("/dashboard").status_code == 200
    live.call(lambda rt: StaffAccounts(rt.storage).disable("dee"))
    res = client.get("/dashboard")
    assert res.status_code == 303 and res.headers["location"].startswith("/dashboard/login")
    _, res = sign_in(live.url, "dee")
    assert res.status_code == 401 and GENERIC in res.text  # the same words as a wrong password
    assert sessions_of(live, dee.id) == 0
    client.close()


def test_sign_out_ends_the_session_for_good(live: LiveServer) -> None:
    eve = live.add_staff("eve", Role.DOCTOR, "Dr Eve")
    client, _ = sign_in(live.url, "eve")
    stolen = client.cookies["carebot_session"]
    res = client.post(
        "/dashboard/logout", data={"csrf_token": csrf_of(client.get("/dashboard").text)}
    )
    assert res.status_code == 303 and res.headers["location"] == "/dashboard/login"
    assert client.get("/dashboard").status_code == 303
    # The old token is dead on the server, not only forgotten by this browser.
    replay = httpx.Client(base_url=live.url, cookies={"carebot_session": stolen})
    assert replay.get("/dashboard").status_code == 303
    assert replay.get("/dashboard/events").status_code == 401
    assert sessions_of(live, eve.id) == 0
    assert [e.action for e in audit(live, eve.id)][-2:] == ["staff.login", "staff.logout"]
    client.close()
    replay.close()


def test_a_signed_in_visitor_skips_the_login_form(live: LiveServer) -> None:
    live.add_staff("fay", Role.DOCTOR, "Dr Fay")
    client, _ = sign_in(live.url, "fay")
    res = client.get("/dashboard/login")
    assert res.status_code == 303 and res.headers["location"] == "/dashboard"
    client.close()
