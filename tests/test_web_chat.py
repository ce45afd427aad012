"""The web chat as a full channel, over real HTTP (uvicorn on loopback) and in Chromium:
server-issued chat identity, history, doctors' messages on the chat's own event stream,
asking for a doctor, deleting one's data, and the bounds every public endpoint needs.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from bot.cases.models import Actor
from bot.channels.web_chat import COOKIE
from bot.llm.base import LLMBackend
from bot.storage.tables import AuditEvent
from tests.dashboard.browser import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, browser_or_skip
from tests.dashboard.live import LiveServer, PageEvents, serving
from tests.fakes import SlowChatModel, database_locked_for, scripted

ANSWER = "Gargle with warm salty water and drink plenty of fluids [1]."
SORE = "How can I soothe a sore throat?"
CHEST = "crushing chest pain and sweating for 20 minutes"
DOCTOR = Actor(name="Dr Ada", staff_id=1)


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, guideline_index_dir: Path
) -> Iterator[LiveServer]:
    with serving(
        tmp_path_factory.mktemp("web-chat"),
        guideline_index_dir,
        scripted(ANSWER),
        web_rate_limit_messages=6,
    ) as server:
        yield server


def client(live: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=live.url, timeout=60)


def say(web: httpx.Client, text: str, **extra: Any) -> dict[str, Any]:
    """Post a message; return the final reply event (deltas checked to come first)."""
    body = {"message_id": uuid.uuid4().hex, "text": text, **extra}
    with web.stream("POST", "/api/messages", json=body) as res:
        assert res.status_code == 200, res.read()
        events = [json.loads(line) for line in res.iter_lines() if line]
    assert events[-1]["type"] == "reply" and all(e["type"] == "delta" for e in events[:-1])
    return dict(events[-1])


def case_of(live: LiveServer, text: str) -> int:
    """The open case whose patient wrote `text`."""

    async def find(rt: Any) -> int:
        for view in await rt.cases.store.queue():
            detail = await rt.cases.store.detail(view.id)
            if detail and any(text in line.text for line in detail.transcript):
                return int(view.id)
        raise AssertionError("no case")

    return live.call(find)


def test_the_server_issues_the_chat_and_a_body_cannot_name_another(live: LiveServer) -> None:
    with client(live) as alice, client(live) as mallory:
        first = say(alice, SORE, consent=True)
        cookie = alice.cookies.get(COOKIE)
        assert cookie and len(cookie) >= 40
        issued = httpx.get(f"{live.url}/api/history").headers["set-cookie"].lower()
        assert "httponly" in issued and "samesite=strict" in issued
        assert first["kind"] == "answer" and "[1]" in first["text"]
        # Naming a chat in the body means nothing: mallory has her own, empty chat.
        say(mallory, "hello", chat_id=cookie, consent=True)
        theirs = mallory.get("/api/history").json()["messages"]
        assert [m["text"] for m in theirs if m["role"] == "patient"] == ["hello"]
        mine = alice.get("/api/history").json()["messages"]
        assert [m["role"] for m in mine] == ["patient", "bot"] and mine[0]["text"] == SORE


def test_a_chat_opens_only_with_a_token_this_server_issued(live: LiveServer) -> None:
    with client(live) as alice:
        say(alice, SORE, consent=True)
        issued = alice.cookies.get(COOKIE)
        assert issued is not None and "." in issued
    raw, _, signature = issued.partition(".")
    # Someone plants a value of their choosing (or alters an issued one) in a patient's
    # browser, to read later what the patient writes: each opens a fresh, empty chat, and
    # the browser is given a token of the server's own instead.
    planted_values = [
        "a" * 20,  # a 20-character value: opened a chat before
        "x" * 43,
        f"{raw}.{'A' * len(signature)}",  # a real token's first half, a forged signature
        f"{raw[:-1]}{'B' if raw[-1] != 'B' else 'C'}.{signature}",  # one character changed
        f"{raw}.",
        "",
    ]
    for planted in planted_values:
        with client(live) as victim:
            if planted:
                victim.cookies.set(COOKIE, planted, domain=httpx.URL(live.url).host)
            res = victim.get("/api/history")
            assert res.json()["messages"] == [], planted
            fresh = res.cookies.get(COOKIE)
            assert fresh is not None and fresh != planted, planted
            say(victim, "my private words", consent=True)
        with client(live) as planter:
            if planted:
                planter.cookies.set(COOKIE, planted, domain=httpx.URL(live.url).host)
            theirs = planter.get("/api/history").json()["messages"]
            assert all("my private words" not in m["text"] for m in theirs), planted
    # The token that was issued still opens its own chat.
    with client(live) as again:
        again.cookies.set(COOKIE, issued, domain=httpx.URL(live.url).host)
        mine = again.get("/api/history").json()["messages"]
        assert mine and mine[0]["text"] == SORE
    key = live.runtime.settings.data_dir / "signing.key"
    assert key.stat().st_mode & 0o077 == 0  # the signing key: CareBot's user alone


def test_the_reply_carries_what_the_page_shows_and_no_internals(live: LiveServer) -> None:
    with client(live) as web:
        reply = say(web, CHEST)
    assert reply["kind"] == "emergency" and "Call 112" in reply["text"]
    assert set(reply) == {"type", "text", "kind", "level", "red_flags", "citations", "triage"}
    assert reply["red_flags"][0]["rule_id"].startswith("EM-")
    assert reply["triage"] is None or set(reply["triage"]) == {"level", "rules", "asked"}


def test_doctors_messages_and_notices_reach_the_web_chat(live: LiveServer) -> None:
    with client(live) as web:
        say(web, "I have had a rash for a week", consent=True)
        asked = web.post("/api/doctor").json()
        assert asked["kind"] == "notice" and "doctor" in asked["text"].lower()
        case_id = case_of(live, "I have had a rash for a week")

        page = PageEvents(web)
        assert page.content_type.startswith("text/event-stream")
        live.call(lambda rt: rt.cases.claim(case_id, DOCTOR))
        live.call(lambda rt: rt.cases.reply(case_id, DOCTOR, "Please send me a photo."))
        pushed = page.wait_for(2)
        assert any("Dr Ada (doctor) has joined" in t for t in pushed), pushed
        assert "Dr Ada (doctor): Please send me a photo." in pushed
        # The patient's next message goes to the doctor, not to the model.
        relayed = say(web, "it is on my arm")
        assert relayed["kind"] == "relayed"
        # A reloaded page reads the doctor's message in its history.
        lines = web.get("/api/history").json()["messages"]
        assert {"role": "doctor", "text": "Please send me a photo."} in lines


def test_forget_deletes_the_chat_and_starts_a_new_one(live: LiveServer) -> None:
    with client(live) as web:
        say(web, SORE, consent=True)
        old = web.cookies.get(COOKIE)
        gone = web.post("/api/forget").json()
        assert gone["kind"] == "notice" and "deleted" in gone["text"]
        assert web.cookies.get(COOKIE) is None
        assert web.get("/api/history").json()["messages"] == []
        assert web.cookies.get(COOKIE) not in (None, old)  # a fresh chat


def test_oversized_bodies_are_refused_before_they_are_read(live: LiveServer) -> None:
    with client(live) as web:
        huge = b'{"message_id": "1", "text": "' + b"x" * (3 * 1024 * 1024) + b'"}'
        res = web.post("/api/messages", content=huge, headers={"content-type": "application/json"})
        assert res.status_code == 413 and "too large" in res.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length at all
            yield b'{"message_id": "1", "text": "'
            for _ in range(40):
                yield b"y" * 100_000
            yield b'"}'

        res = web.post(
            "/api/messages", content=chunks(), headers={"content-type": "application/json"}
        )
        assert res.status_code == 413


def test_a_flooding_chat_is_slowed_but_its_red_flags_still_answered(live: LiveServer) -> None:
    with client(live) as web:
        kinds = [
            say(web, f"question {n} about my sore throat", consent=True)["kind"] for n in range(7)
        ]
        assert kinds[-1] == "notice"  # past 6 in the window: "please slow down"
        urgent = say(web, "my father collapsed and is not breathing")
        assert urgent["kind"] == "emergency"


def test_too_many_at_once_get_the_rules_at_once(tmp_path: Path, guideline_index_dir: Path) -> None:
    model = SlowChatModel(delay_s=3.0, seen=[])
    with serving(
        tmp_path,
        guideline_index_dir,
        LLMBackend(model),
        web_max_concurrent=1,
        web_address_messages_per_minute=4,
    ) as live:
        slow = threading.Thread(target=lambda: say(client(live), SORE, consent=True))
        slow.start()
        deadline = time.monotonic() + 10
        while not model.active and time.monotonic() < deadline:
            time.sleep(0.02)
        with client(live) as other:
            started = time.monotonic()
            busy = say(other, "what helps a cough?", consent=True)
            emergency = say(other, CHEST)
            assert time.monotonic() - started < 2.5  # neither waited for the model
        assert busy["kind"] == "error" and "Many people" in busy["text"]
        assert emergency["kind"] == "emergency"
        slow.join(30)
        # One address past its limit: not stored, answered by the rules alone.
        with client(live) as third:
            replies = [say(third, CHEST) for _ in range(3)]
        assert all(r["level"] == "emergency" and "112" in r["text"] for r in replies), [
            (r["kind"], r["level"], r["text"][:60]) for r in replies
        ]
        with client(live) as fourth:
            refused = say(fourth, "hello")
        assert refused["kind"] == "error" and "Too many messages" in refused["text"]


def test_the_page_shows_history_and_doctors_messages_live(live: LiveServer) -> None:
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = chromium.new_context().new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(live.url)
        page.fill("#text", "yes")
        page.press("#text", "Enter")
        page.wait_for_selector(".msg.bot.consent, .msg.bot.notice")
        page.fill("#text", "An itchy rash on my leg since Monday")
        page.press("#text", "Enter")
        # A locator, not wait_for_function: the page's CSP (no eval) applies to the test too.
        page.locator(".msg.bot:not(.draft)").nth(1).wait_for()
        page.click("#doctor")
        page.wait_for_selector("text=asked for a doctor")
        case_id = case_of(live, "An itchy rash on my leg since Monday")
        live.call(lambda rt: rt.cases.claim(case_id, DOCTOR))
        live.call(lambda rt: rt.cases.reply(case_id, DOCTOR, "Is it itchy?"))
        page.wait_for_selector("text=Dr Ada (doctor): Is it itchy?")
        page.reload()
        page.wait_for_selector("text=Is it itchy?")  # from the history
        page.wait_for_selector("text=An itchy rash on my leg since Monday")
        chromium.close()


def test_an_emergency_is_shown_at_once_while_the_database_is_locked(
    tmp_path: Path, guideline_index_dir: Path
) -> None:
    with serving(tmp_path, guideline_index_dir, scripted(ANSWER), early_warning_s=0.5) as live:
        with client(live) as web:
            say(web, SORE, consent=True)
            body = {"message_id": uuid.uuid4().hex, "text": CHEST}
            with database_locked_for(tmp_path / "data" / "carebot.db", 4.0):
                started = time.monotonic()
                with web.stream("POST", "/api/messages", json=body) as res:
                    lines = res.iter_lines()
                    first = json.loads(next(line for line in lines if line))
                    first_at = time.monotonic() - started
                    rest = [json.loads(line) for line in lines if line]
        assert first["type"] == "warning" and "Call 112" in first["text"] and first_at < 2.0
        final = rest[-1]
        # The page replaces the warning with the reply, which starts with it: shown once.
        assert final["type"] == "reply" and final["text"].startswith(first["text"])
        assert final["text"].count("Call 112 now") == 1


def test_a_patient_downloads_a_copy_of_their_data(live: LiveServer) -> None:
    with client(live) as web:
        assert web.get("/api/mydata").status_code == 404  # nothing stored yet
        say(web, SORE, consent=True)
        res = web.get("/api/mydata")
    assert res.status_code == 200 and "attachment" in res.headers["content-disposition"]
    bundle = res.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds[0] == "Patient" and kinds.count("Communication") >= 2
    said = [
        e["resource"]["payload"][0]["contentString"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Communication"
    ]
    assert SORE in said and any("[1]" in s for s in said)  # their words and the answer
    pseudonym = bundle["entry"][0]["resource"]["id"]
    exported = live.call(
        lambda rt: rt.storage.run(
            lambda s: [
                e.action
                for e in s.exec(select(AuditEvent).where(AuditEvent.subject_id == pseudonym))
            ]
        )
    )
    assert "patient.data_exported" in exported  # audited, without the content
    with client(live) as stranger:  # another browser: its own (empty) chat, not this one
        assert stranger.get("/api/mydata").status_code == 404
