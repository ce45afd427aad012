"""The web chat over real HTTP: `carebot serve` as a process, streaming JSON lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import free_port, wait_for_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, guideline_index_dir: Path) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("web")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREBOT_")}
    env.update(
        CAREBOT_DATA_DIR=str(tmp / "data"),
        CAREBOT_INDEX_DIR=str(guideline_index_dir),
        CAREBOT_WEB_PORT=str(port),
        CAREBOT_TRUSTED_PROXIES="127.0.0.1",  # as behind a reverse proxy on the same host
    )
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve"],
        env=env,
        cwd=tmp,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait_for_port(port, 120), (tmp / "serve.log").read_text()
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


_CHATS: dict[str, httpx.Client] = {}  # one browser (cookie jar) per chat name


def send(base: str, chat: str, text: str, **extra: Any) -> list[dict[str, Any]]:
    web = _CHATS.setdefault(chat, httpx.Client(base_url=base, timeout=120))
    body = {"message_id": uuid.uuid4().hex, "text": text, **extra}
    with web.stream("POST", "/api/messages", json=body) as res:
        assert res.status_code == 200
        assert res.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in res.iter_lines() if line]


def test_page_is_served(server: str) -> None:
    res = httpx.get(server)
    assert res.status_code == 200 and "<title>CareBot</title>" in res.text
    assert "<script>" not in res.text and "<style>" not in res.text  # all from /static
    script = httpx.get(f"{server}/static/chat.js")
    assert script.status_code == 200 and "/api/messages" in script.text


@pytest.mark.parametrize(
    "path", ["/", "/healthz", "/api/history", "/static/chat.js", "/dashboard/login", "/nowhere"]
)
def test_every_response_carries_security_headers(server: str, path: str) -> None:
    res = httpx.get(f"{server}{path}")
    csp = res.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert res.headers["x-frame-options"] == "DENY"
    assert res.headers["x-content-type-options"] == "nosniff"
    assert res.headers["referrer-policy"] == "no-referrer"
    if not path.startswith("/static/"):
        assert res.headers["cache-control"] == "no-store"  # patients' words stay off caches
    assert "strict-transport-security" not in res.headers  # plain HTTP: no HSTS promise
    # Behind a proxy that terminated HTTPS (configured as trusted), HSTS is sent.
    proxied = httpx.get(f"{server}{path}", headers={"X-Forwarded-Proto": "https"})
    assert proxied.headers["strict-transport-security"].startswith("max-age=31536000")


def test_conversation_consent_then_streamed_cited_answer(server: str) -> None:
    chat = "web-" + uuid.uuid4().hex
    (consent,) = send(server, chat, "I have a sore throat, what can I do?")
    assert consent["type"] == "reply" and consent["kind"] == "consent"
    (questions,) = send(server, chat, "yes")
    # Triage screens the red flags before advising, and the API carries the ids it asked.
    assert (
        questions["kind"] == "followup" and "1. Are you struggling to breathe" in questions["text"]
    )
    assert questions["triage"]["asked"][:2] == ["rf_breathing", "rf_dehydration"]
    events = send(server, chat, "no")  # a lone "no" answers the round
    assert [e["type"] for e in events][-1] == "reply"
    # No draft streamed: the patient sees only the checked answer.
    assert [e["type"] for e in events] == ["reply"]
    reply = events[-1]
    assert reply["kind"] == "answer" and reply["citations"][0]["title"] == "Sore throat"
    assert reply["level"] == "self_care" and "manage" in reply["text"]


def test_emergency_over_http(server: str) -> None:
    events = send(server, "web-" + uuid.uuid4().hex, "my face is drooping and my speech is slurred")
    assert events == [events[-1]] and events[-1]["kind"] == "emergency"
    assert "Call 112 now" in events[-1]["text"]


@pytest.mark.parametrize(
    "body",
    [
        {"message_id": "1", "text": "x" * 200_001},
        {"message_id": "", "text": "hi"},
        {"message_id": "1"},
    ],
)
def test_bad_requests_get_a_clear_error(server: str, body: dict[str, Any]) -> None:
    res = httpx.post(f"{server}/api/messages", json=body)
    assert res.status_code == 422 and "could not be read" in res.json()["error"]


def test_malformed_json_is_refused(server: str) -> None:
    res = httpx.post(
        f"{server}/api/messages",
        content=b"\xff{not json",
        headers={"content-type": "application/json"},
    )
    assert res.status_code in (400, 422)


def test_health(server: str) -> None:
    res = httpx.get(f"{server}/healthz")
    assert res.status_code == 200
    health = res.json()
    # The embedded model passed its self-test in its own process (speed varies by machine).
    assert health.pop("llm_status").startswith("ready (")
    assert health == {
        "status": "ok",
        "database": "ok",
        "memory": "ok",
        "llm": "embedded",
        "guidelines": "ok",
        "doctors_alerts": "dashboard only (no doctors' group configured)",
    }
