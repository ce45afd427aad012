"""The queue, the case page and its actions over HTTP; live updates as Server-Sent Events."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta

import httpx
import pytest

from bot.dashboard.accounts import StaffAccount, StaffAccounts
from bot.dashboard.case_reads import CaseReads
from bot.dashboard.roles import Role
from bot.models import utcnow
from bot.runtime import Runtime
from tests.dashboard.live import LiveServer, csrf_of, sign_in


@pytest.fixture(scope="module")
def doctors(live: LiveServer) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    live.add_staff("gus", Role.DOCTOR, "Dr Gus")
    live.add_staff("hal", Role.DOCTOR, "Dr Hal")
    gus, _ = sign_in(live.url, "gus")
    hal, _ = sign_in(live.url, "hal")
    yield gus, hal
    gus.close()
    hal.close()


def post(client: httpx.Client, path: str, **data: str) -> httpx.Response:
    """Submit a form of the case page the way a browser does, and follow to the page."""
    case_page = path.rsplit("/", 1)[0]
    token = csrf_of(client.get(case_page).text)
    res = client.post(path, data={"csrf_token": token, **data})
    assert res.status_code == 303 and res.headers["location"].startswith(case_page + "?notice=")
    return client.get(res.headers["location"])


class EventStream:
    """The lines of an open Server-Sent Events response, read as far as a test needs."""

    def __init__(self, res: httpx.Response) -> None:
        assert res.status_code == 200
        assert res.headers["content-type"].startswith("text/event-stream")
        self.lines = res.iter_lines()

    def until(self, marker: str, timeout_s: float = 10) -> list[dict[str, object]]:
        """Read up to a line containing `marker`; return the events' data on the way."""
        seen: list[dict[str, object]] = []
        deadline = time.monotonic() + timeout_s
        for line in self.lines:
            if line.startswith("data: ") and line != "data: {}":
                seen.append(json.loads(line[6:]))
            if marker in line:
                return seen
            assert time.monotonic() < deadline, f"no {marker!r} on the stream; saw {seen}"
        raise AssertionError(f"the stream ended before {marker!r}")

    def ended_within(self, timeout_s: float) -> bool:
        """True when the server closes the stream within `timeout_s`."""
        started = time.monotonic()
        for _line in self.lines:
            if time.monotonic() - started > timeout_s:
                return False
        return time.monotonic() - started <= timeout_s


def test_the_queue_shows_active_cases_most_urgent_then_oldest(
    live: LiveServer, doctors: tuple[httpx.Client, httpx.Client]
) -> None:
    gus, _ = doctors
    first = live.open_case("queue-1")
    second = live.open_case("queue-2", "my face is drooping and my speech is slurred")
    page = gus.get("/dashboard").text
    assert page.index(f'data-case="{first}"') < page.index(f'data-case="{second}"')
    row = page[page.index(f'data-case="{first}"') :].split("</tr>", 1)[0]
    assert "emergency" in row and ">open<" in row and "—" in row
    # Before consent the summary is built from the triage data; the queue shows its first line.
    assert "Chief complaint: crushing chest pain and sweating" in row
    assert "Red flags" not in row  # ... and only that


def test_claim_reply_resolve(live: LiveServer, doctors: tuple[httpx.Client, httpx.Client]) -> None:
    gus, hal = doctors
    case_id = live.open_case("flow-1")
    page = post(gus, f"/dashboard/cases/{case_id}/claim")
    assert "You have claimed this case." in page.text and "claimed by <strong>Dr Gus" in page.text

    refused = post(hal, f"/dashboard/cases/{case_id}/claim")
    assert "Sorry, this case is already claimed by Dr Gus." in refused.text
    assert "Send to patient" not in refused.text  # Hal may not write to Gus's patient
    assert (
        "not_yours" in post(hal, f"/dashboard/cases/{case_id}/reply", text="hi").url.query.decode()
    )

    page = post(gus, f"/dashboard/cases/{case_id}/reply", text="Call 112 now. Are you alone?")
    # No Telegram in this test: the message is kept and the page says it could not go out.
    assert "could not be reached just now" in page.text
    assert '<li class="msg doctor">' in page.text and "Call 112 now. Are you alone?" in page.text
    [stored] = live.doctor_messages(case_id)
    assert stored.text == "Call 112 now. Are you alone?" and stored.meta["doctor"] == "Dr Gus"

    page = post(
        gus,
        f"/dashboard/cases/{case_id}/resolve",
        outcome="Ambulance called by the patient's partner.",
        disposition="referred_emergency",
    )
    assert "The case is resolved." in page.text
    assert "Ambulance called by the patient&#39;s partner." in page.text  # in the audit trail
    assert f'data-case="{case_id}"' not in gus.get("/dashboard").text


def test_patient_text_is_escaped_everywhere(
    live: LiveServer, doctors: tuple[httpx.Client, httpx.Client]
) -> None:
    gus, _ = doctors
    attack = 'crushing chest pain <script>alert("x")</script><img src=x onerror=alert(1)>'
    case_id = live.open_case("xss-1", attack)
    page = gus.get(f"/dashboard/cases/{case_id}").text
    assert (
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    )
    assert "<script>alert" not in page and "<img src=x" not in page
    post(gus, f"/dashboard/cases/{case_id}/claim")
    page = post(gus, f"/dashboard/cases/{case_id}/reply", text="</ol><b>bold?</b>").text
    assert "&lt;/ol&gt;&lt;b&gt;bold?&lt;/b&gt;" in page and "<b>bold?</b>" not in page


def test_the_queue_stream_says_what_changed_without_patient_text(
    live: LiveServer, doctors: tuple[httpx.Client, httpx.Client]
) -> None:
    gus, _ = doctors
    with gus.stream("GET", "/dashboard/events") as res:
        stream = EventStream(res)
        stream.until("event: ready")
        case_id = live.open_case("stream-1", "crushing chest pain, secret detail 4711")
        seen = stream.until('"kind": "opened"')
        assert seen[-1]["case_id"] == case_id and seen[-1]["level"] == "emergency"
        # A heartbeat comment keeps the connection open between events.
        seen += stream.until(": heartbeat")
        live.patient_says("it is getting worse, secret detail 4712", "stream-1")
        seen += stream.until(": heartbeat") + stream.until(": heartbeat")
    assert seen and all("text" not in event for event in seen)
    assert "4711" not in json.dumps(seen) and "4712" not in json.dumps(seen)


def test_the_case_stream_carries_that_cases_messages(
    live: LiveServer, doctors: tuple[httpx.Client, httpx.Client]
) -> None:
    gus, _ = doctors
    case_id = live.open_case("stream-2")
    other = live.open_case("stream-3")
    post(gus, f"/dashboard/cases/{case_id}/claim")
    post(gus, f"/dashboard/cases/{other}/claim")
    with gus.stream("GET", f"/dashboard/cases/{case_id}/events") as res:
        stream = EventStream(res)
        stream.until("event: ready")
        live.patient_says("the other patient writes", "stream-3")
        live.patient_says("the pain now goes to my left arm", "stream-2")
        seen = stream.until("left arm")
        assert [(e["kind"], e["text"]) for e in seen] == [
            ("patient", "the pain now goes to my left arm")
        ]


def test_a_stream_ends_when_its_doctor_signs_out(live: LiveServer) -> None:
    live.add_staff("ivy", Role.DOCTOR, "Dr Ivy")
    ivy, _ = sign_in(live.url, "ivy")
    with ivy.stream("GET", "/dashboard/events") as res:
        stream = EventStream(res)
        stream.until("event: ready")
        other_tab, _ = sign_in(live.url, "ivy")
        token = csrf_of(ivy.get("/dashboard").text)
        ivy.post("/dashboard/logout", data={"csrf_token": token})
        assert stream.ended_within(5)  # at the next heartbeat (every 0.5 s here)
    assert other_tab.get("/dashboard").status_code == 200  # only that sign-in ended
    other_tab.close()
    ivy.close()


def test_the_case_belongs_to_an_account_not_a_name(live: LiveServer) -> None:
    live.add_staff("lee1", Role.DOCTOR, "Dr Lee")
    live.add_staff("lee2", Role.DOCTOR, "Dr Lee")
    live.add_staff("root", Role.ADMIN, "Dr Root")
    first, _ = sign_in(live.url, "lee1")
    namesake, _ = sign_in(live.url, "lee2")
    admin, _ = sign_in(live.url, "root")
    case_id = live.open_case("owner-1")
    post(first, f"/dashboard/cases/{case_id}/claim")
    page = post(namesake, f"/dashboard/cases/{case_id}/reply", text="from the other Dr Lee")
    assert "Only the doctor who holds this case can reply to or resolve it" in page.text
    assert "Send to patient" not in page.text
    # Not even an admin writes to or closes a case another doctor holds without taking it over.
    page = post(admin, f"/dashboard/cases/{case_id}/reply", text="Admin here, quietly.")
    assert "Only the doctor who holds this case" in page.text
    page = post(admin, f"/dashboard/cases/{case_id}/resolve", outcome="x", disposition="other")
    assert "Only the doctor who holds this case" in page.text
    assert live.doctor_messages(case_id) == []
    # Taking over says why (recorded), and the case is then the admin's alone.
    page = post(admin, f"/dashboard/cases/{case_id}/take-over", reason="short")
    assert "Not taken over: say why" in page.text
    page = post(
        admin, f"/dashboard/cases/{case_id}/take-over", reason="Dr Lee went off shift at 18:00."
    )
    assert "The case is yours now." in page.text
    trail = page.text.split('id="audit"', 1)[1]
    assert "taken over</strong> by Dr Root" in trail and "went off shift" in trail
    page = post(admin, f"/dashboard/cases/{case_id}/reply", text="Admin here, taking over.")
    assert "Admin here, taking over." in page.text
    assert [m.meta["doctor"] for m in live.doctor_messages(case_id)] == ["Dr Root"]
    page = post(first, f"/dashboard/cases/{case_id}/reply", text="still mine?")
    assert "Only the doctor who holds this case" in page.text  # the first doctor lost it
    page = post(
        admin, f"/dashboard/cases/{case_id}/resolve", outcome="Handled", disposition="other"
    )
    assert "The case is resolved." in page.text
    for client in (first, namesake, admin):
        client.close()


def reads_of(live: LiveServer, case_id: int) -> list[tuple[str, str]]:
    """(actor, via) of every recorded read of the case."""
    lines = live.call(lambda rt: CaseReads(rt.storage).of_case(case_id))
    return [(line.actor, str(line.details["via"])) for line in lines]


def test_who_read_a_case_is_recorded_and_shown_to_administrators(
    live: LiveServer, doctors: tuple[httpx.Client, httpx.Client]
) -> None:
    gus, hal = doctors
    gus_id = live.call(lambda rt: account_of(rt, "gus")).id
    hal_id = live.call(lambda rt: account_of(rt, "hal")).id
    case_id = live.open_case("reads-1")
    # A client that calls its first look a refresh is recorded all the same.
    first = gus.get(f"/dashboard/cases/{case_id}", headers={"X-CareBot-Refresh": "1"})
    assert first.status_code == 200
    # Opened again at once, it is the same reading: not recorded twice.
    assert gus.get(f"/dashboard/cases/{case_id}").status_code == 200
    with hal.stream("GET", f"/dashboard/cases/{case_id}/events") as res:
        EventStream(res).until("event: ready")
    assert reads_of(live, case_id) == [(f"staff:{gus_id}", "page"), (f"staff:{hal_id}", "stream")]
    # The queue shows the first line of each summary: a read of every case on it.
    assert f'data-case="{case_id}"' in hal.get("/dashboard").text
    assert (f"staff:{hal_id}", "queue") in reads_of(live, case_id)
    # After the window, a page still open and refreshing itself is recorded again.
    later = CaseReads(live.runtime.storage, clock=lambda: utcnow() + timedelta(minutes=6))
    gus_account = live.call(lambda rt: account_of(rt, "gus"))
    live.call(lambda rt: later.record(case_id, gus_account, "page"))
    assert reads_of(live, case_id).count((f"staff:{gus_id}", "page")) == 2

    page = gus.get(f"/dashboard/cases/{case_id}", headers={"X-CareBot-Refresh": "1"}).text
    assert "Who read this case" not in page  # a doctor does not see the readers ...
    assert "Audit trail" in page and "read</strong>" not in page  # ... nor do reads fill the trail
    live.add_staff("ines", Role.ADMIN, "Ines Admin")
    ines, _ = sign_in(live.url, "ines")
    with closing(ines):
        page = ines.get(f"/dashboard/cases/{case_id}").text
    readers = page.split('id="reads"', 1)[1]
    assert readers.index("Dr Gus") < readers.index("Dr Hal") < readers.index("Ines Admin")
    assert "via: stream" in readers


def test_a_closed_case_opens_only_by_breaking_the_glass(
    live: LiveServer, doctors: tuple[httpx.Client, httpx.Client]
) -> None:
    gus, hal = doctors
    case_id = live.open_case("glass-1")
    post(gus, f"/dashboard/cases/{case_id}/claim")
    page = post(
        gus, f"/dashboard/cases/{case_id}/resolve", outcome="Seen in A&E.", disposition="other"
    )
    assert "The case is resolved." in page.text  # its doctor reads it back without a reason

    closed = hal.get(f"/dashboard/cases/{case_id}")
    assert closed.status_code == 403 and "is closed" in closed.text
    assert "chest pain" not in closed.text.lower()  # nothing of the patient's before the reason
    with hal.stream("GET", f"/dashboard/cases/{case_id}/events") as res:
        assert res.status_code == 403
    token = csrf_of(closed.text)
    for reason in ("", "   ", "because", "x" * 501):
        refused = hal.post(
            f"/dashboard/cases/{case_id}/break-glass", data={"csrf_token": token, "reason": reason}
        )
        assert refused.status_code == 422 and "Not opened" in refused.text
    assert hal.get(f"/dashboard/cases/{case_id}").status_code == 403

    opened = hal.post(
        f"/dashboard/cases/{case_id}/break-glass",
        data={"csrf_token": token, "reason": "Patient  complained about the advice; reviewing."},
    )
    assert opened.status_code == 303
    page = hal.get(f"/dashboard/cases/{case_id}")
    assert page.status_code == 200 and "chest pain" in page.text.lower()
    trail = page.text.split('id="audit"', 1)[1]
    assert "break glass</strong> by Dr Hal" in trail
    assert "Patient complained about the advice; reviewing." in trail
    # An hour later the glass is whole again.
    later = CaseReads(live.runtime.storage, clock=lambda: utcnow() + timedelta(minutes=61))
    view = live.call(lambda rt: rt.cases.store.view(case_id))
    assert view is not None and view.status.value == "resolved"
    hal_account = live.call(lambda rt: account_of(rt, "hal"))
    assert live.call(lambda rt: later.open_to(view, hal_account)) is False
    assert live.call(lambda rt: CaseReads(rt.storage).open_to(view, hal_account)) is True


async def account_of(rt: Runtime, username: str) -> StaffAccount:
    return next(a for a in await StaffAccounts(rt.storage).all() if a.username == username)


def test_an_open_case_is_resolved_only_by_the_doctor_who_claims_it(
    live: LiveServer, doctors: tuple[httpx.Client, httpx.Client]
) -> None:
    gus, hal = doctors
    case_id = live.open_case("claim-first-1")
    page = gus.get(f"/dashboard/cases/{case_id}").text
    assert "Claim this case" in page and "Resolve case" not in page
    refused = post(
        gus, f"/dashboard/cases/{case_id}/resolve", outcome="Nothing to do", disposition="other"
    )
    assert "claim it first" in refused.text
    view = live.call(lambda rt: rt.cases.store.view(case_id))
    assert view is not None and view.status.value == "open"  # still in the queue, alerting
    post(hal, f"/dashboard/cases/{case_id}/claim")
    page = post(hal, f"/dashboard/cases/{case_id}/resolve", outcome="Called.", disposition="other")
    assert "The case is resolved." in page.text


def test_a_new_case_shows_an_earlier_closed_case_only_through_its_glass(
    live: LiveServer, doctors: tuple[httpx.Client, httpx.Client]
) -> None:
    gus, hal = doctors
    chat = "history-1"
    first = live.open_case(chat, "crushing chest pain and my left arm is numb")
    post(gus, f"/dashboard/cases/{first}/claim")
    post(gus, f"/dashboard/cases/{first}/resolve", outcome="Seen in A&E.", disposition="other")
    second = live.open_case(chat, "my face is drooping and my speech is slurred")
    assert second != first
    page = hal.get(f"/dashboard/cases/{second}").text
    transcript = page.split('id="transcript"', 1)[1].split("</ol>", 1)[0]
    assert "face is drooping" in transcript  # this case's own words
    assert "left arm is numb" not in page  # the closed case's words are not on this page
    earlier = page.split('id="earlier"', 1)[1].split("</p>", 1)[0]
    assert f'closed case <a href="/dashboard/cases/{first}">#{first}</a>' in earlier
    assert hal.get(f"/dashboard/cases/{first}").status_code == 403  # ... and that is glass


def test_administrators_see_break_glass_and_take_overs_in_the_security_log(
    live: LiveServer, doctors: tuple[httpx.Client, httpx.Client]
) -> None:
    gus, hal = doctors
    case_id = live.open_case("security-log-1")
    post(gus, f"/dashboard/cases/{case_id}/claim")
    post(hal, f"/dashboard/cases/{case_id}/take-over", reason="Dr Gus is in theatre now.")
    post(hal, f"/dashboard/cases/{case_id}/resolve", outcome="Done.", disposition="other")
    closed = gus.get(f"/dashboard/cases/{case_id}")
    gus.post(
        f"/dashboard/cases/{case_id}/break-glass",
        data={"csrf_token": csrf_of(closed.text), "reason": "Reviewing a complaint today."},
    )
    live.add_staff("sal", Role.ADMIN, "Sal Admin")
    admin, _ = sign_in(live.url, "sal")
    with closing(admin):
        log = admin.get("/dashboard/security").text.split('id="security-log"', 1)[1]
    assert "break glass</strong> by Dr Gus" in log and f"case {case_id}" in log
    assert "taken over</strong> by Dr Hal" in log
    assert log.index("break glass") < log.index("taken over")  # newest first
