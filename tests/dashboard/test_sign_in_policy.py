"""Sign-in like a bank's: attempts throttled per address and overall before any password is
checked, nobody locked out from elsewhere, an absolute session lifetime, pages refreshing
themselves not counted as activity, live streams re-checking the sign-in on a clock, and
password change."""

from __future__ import annotations

import threading
import time
from contextlib import closing
from datetime import datetime, timedelta

import httpx
from sqlmodel import Session, select

from bot.cases.events import CaseEvent
from bot.dashboard.login_throttle import LoginThrottle, ThrottlePolicy
from bot.dashboard.roles import Role
from bot.dashboard.sessions import LoginSessions
from bot.models import utcnow
from bot.rate_limit import RateLimits
from bot.storage.tables import AuditEvent, StaffSession
from tests.dashboard.live import PASSWORD, LiveServer, csrf_of, sign_in


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_an_attacker_elsewhere_cannot_lock_a_doctor_out() -> None:
    clock = Clock()
    throttle = LoginThrottle(
        ThrottlePolicy(per_client=20, overall=100, window_s=900), RateLimits(clock=clock)
    )
    for _ in range(5):
        assert await throttle.admit("203.0.113.9", "ada") == 0
        await throttle.failed("203.0.113.9", "ada")
    assert 890 < await throttle.admit("203.0.113.9", "ada") <= 900  # that address waits for "ada"
    assert (
        await throttle.admit("203.0.113.9", "bo") == 0
    )  # other names are still counted per address
    assert await throttle.admit("10.1.2.3", "Ada ") == 0  # Dr Ada at the hospital signs in
    await throttle.succeeded("10.1.2.3", "ada")
    clock.now += 901
    assert await throttle.admit("203.0.113.9", "ada") == 0  # the window has passed


async def test_addresses_and_everyone_together_are_limited_before_argon2() -> None:
    clock = Clock()
    throttle = LoginThrottle(
        ThrottlePolicy(per_client=3, overall=5, window_s=60), RateLimits(clock=clock)
    )
    assert [await throttle.admit("a", f"user{i}") for i in range(4)][:3] == [0, 0, 0]
    assert await throttle.admit("a", "user9") > 0  # a fourth name from the same address
    assert await throttle.admit("b", "x") == 0 and await throttle.admit("c", "x") == 0
    assert await throttle.admit("d", "x") > 0  # the overall limit: a guesser with many addresses
    # A known device of the account is counted on its own: the full limits do not stop it,
    # its own five failures do.
    assert await throttle.admit("a", "user1", device="k1") == 0
    for _ in range(5):
        await throttle.failed("a", "user1", device="k1")
    assert await throttle.admit("a", "user1", device="k1") > 0
    assert await throttle.admit("a", "user1", device="k2") == 0  # another known browser


def test_a_sign_in_ends_after_its_lifetime_however_busy(live: LiveServer) -> None:
    account = live.add_staff("lifetime", Role.DOCTOR, "Dr Life")
    now = [utcnow()]
    sessions = LoginSessions(
        live.runtime.storage, idle_s=3600, max_s=12 * 3600, clock=lambda: now[0]
    )
    token = live.call(lambda rt: sessions.start(account))
    for _ in range(23):  # active every 30 minutes for 11.5 hours
        now[0] += timedelta(minutes=30)
        assert live.call(lambda rt: sessions.resolve(token)) is not None
    now[0] += timedelta(minutes=31)
    assert live.call(lambda rt: sessions.resolve(token)) is None


def last_seen(live: LiveServer, staff_id: int) -> datetime:
    with Session(live.runtime.storage.engine) as s:
        row = s.exec(select(StaffSession).where(StaffSession.staff_id == staff_id)).one()
        return row.last_seen_at


def test_a_page_refreshing_itself_does_not_keep_the_sign_in_alive(live: LiveServer) -> None:
    account = live.add_staff("refresher", Role.DOCTOR, "Dr Refresh")
    client, _ = sign_in(live.url, "refresher")
    with closing(client), Session(live.runtime.storage.engine) as s:
        row = s.exec(select(StaffSession).where(StaffSession.staff_id == account.id)).one()
        row.last_seen_at = utcnow() - timedelta(minutes=5)
        s.add(row)
        s.commit()
        before = last_seen(live, account.id)
        assert client.get("/dashboard", headers={"X-CareBot-Refresh": "1"}).status_code == 200
        assert last_seen(live, account.id) == before
        assert client.get("/dashboard").status_code == 200  # the doctor opens the page
        assert last_seen(live, account.id) > before


def test_a_signed_out_stream_ends_while_events_keep_coming(live: LiveServer) -> None:
    live.add_staff("streamer", Role.DOCTOR, "Dr Stream")
    client, _ = sign_in(live.url, "streamer")
    ended = threading.Event()
    lines: list[str] = []

    def watch() -> None:
        with (
            httpx.Client(base_url=live.url, cookies=client.cookies, timeout=30) as viewer,
            viewer.stream("GET", "/dashboard/events") as res,
        ):
            lines.extend(res.iter_lines())  # line by line, as the server sends them
        ended.set()

    threading.Thread(target=watch, daemon=True).start()
    deadline = time.monotonic() + 10
    while not any("ready" in line for line in lines):
        assert time.monotonic() < deadline, "the stream did not open"
        time.sleep(0.05)
    client.post("/dashboard/logout", data={"csrf_token": csrf_of(client.get("/dashboard").text)})
    client.close()
    signed_out = time.monotonic()
    event = CaseEvent(kind="opened", case_id=999, level="urgent", status="open")
    # A busy system: an event every 0.1 s, so the stream never sits idle until a heartbeat.
    while not ended.is_set() and time.monotonic() - signed_out < 8:
        live.call(lambda rt: rt.cases.events.publish(event))
        time.sleep(0.1)
    assert ended.is_set(), "the stream kept sending after its doctor signed out"
    assert time.monotonic() - signed_out < 3  # heartbeat 0.5 s in these tests


def test_a_password_change_ends_the_other_sign_ins(live: LiveServer) -> None:
    account = live.add_staff("changer", Role.OPERATOR, "Olga Change")
    here, _ = sign_in(live.url, "changer")
    elsewhere, _ = sign_in(live.url, "changer")
    new = "a brand new long password"
    with closing(here), closing(elsewhere):
        token = csrf_of(here.get("/dashboard/account").text)

        def change(current: str, first: str, second: str) -> httpx.Response:
            form = {"csrf_token": token, "current": current, "new": first, "repeat": second}
            return here.post("/dashboard/account/password", data=form)

        wrong = change("not my password at all", new, new)
        assert wrong.status_code == 422 and "the current password is wrong" in wrong.text
        differ = change(PASSWORD, new, new + "!")
        assert differ.status_code == 422 and "the two new passwords differ" in differ.text
        short = change(PASSWORD, "short", "short")
        assert short.status_code == 422 and "at least 10 characters" in short.text
        done = change(PASSWORD, new, new)
        assert done.status_code == 303
        assert "Your password is changed" in here.get(done.headers["location"]).text
        assert elsewhere.get("/dashboard/prompts").status_code == 303  # signed out there
        assert here.get("/dashboard/prompts").status_code == 200  # not here
    assert sign_in(live.url, "changer", PASSWORD)[1].status_code == 401
    assert sign_in(live.url, "changer", new)[1].status_code == 303
    with Session(live.runtime.storage.engine) as s:
        actions = [
            e.action
            for e in s.exec(select(AuditEvent).where(AuditEvent.subject_id == str(account.id)))
        ]
    assert "staff.password_change_refused" in actions and "staff.password_changed" in actions
