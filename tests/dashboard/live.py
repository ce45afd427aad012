"""CareBot's web app under uvicorn on a loopback port, in a thread with its own event loop.

Tests talk to it over real HTTP (httpx, Chromium) and reach its runtime with `call`, which
runs a coroutine on the server's loop: sending a patient message through the engine,
creating a staff account, reading the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
import re
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlmodel import Session, col, select

from bot.config import Settings, load_settings
from bot.dashboard.accounts import StaffAccount, StaffAccounts
from bot.dashboard.roles import Role
from bot.llm.base import LLMBackend
from bot.models import IncomingMessage, Reply
from bot.runtime import Runtime
from bot.serve import create_app, proxy_options
from bot.storage.tables import Escalation, Message
from tests.servers import free_port

T = TypeVar("T")
PASSWORD = "correct horse battery staple"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


class LiveServer:
    """Start with `with LiveServer(settings, llm) as live:`; stopped on leaving the block."""

    def __init__(self, settings: Settings, llm: LLMBackend, port: int | None = None) -> None:
        self.settings, self.llm = settings, llm
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app: FastAPI = create_app(settings, llm)  # as `carebot serve` builds it
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread = threading.Thread(target=self._run, name="carebot-live", daemon=True)

    def _run(self) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            config = uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                timeout_graceful_shutdown=2,  # open event streams must not hold shutdown up
                **proxy_options(self.settings),  # as `carebot serve` runs it
            )
            self._server = uvicorn.Server(config)
            await self._server.serve()

        asyncio.run(serve())

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 180
        while not (self._server is not None and self._server.started):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the CareBot web app did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(30)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server's event loop (for coroutines that outlive one `call`)."""
        assert self._loop is not None, "the server has not started"
        return self._loop

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime | None = getattr(self.app.state, "runtime", None)
        assert runtime is not None, "the server has not started"
        return runtime

    def call(self, fn: Callable[[Runtime], Coroutine[Any, Any, T]], timeout: float = 120) -> T:
        """Run `fn(runtime)` on the server's event loop and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(fn(self.runtime), self._loop).result(timeout)

    # --- conveniences ---------------------------------------------------------------------

    def add_staff(self, username: str, role: Role = Role.DOCTOR, name: str = "") -> StaffAccount:
        """Create a staff account with the shared test password."""
        return self.call(
            lambda rt: StaffAccounts(rt.storage).add(username, name or username, role, PASSWORD)
        )

    def patient_says(self, text: str, chat: str, consent: bool = False) -> Reply:
        """Send a Telegram patient's message through the engine."""
        msg = IncomingMessage(
            channel="telegram",
            chat_id=chat,
            user_id=chat,
            message_id=f"m-{time.monotonic_ns()}",
            text=text,
            consent=consent,
        )
        return self.call(lambda rt: rt.engine.handle(msg))

    def open_case(
        self, chat: str, text: str = "crushing chest pain and sweating", consent: bool = False
    ) -> int:
        """Open a case for a new patient (an emergency, or urgent after consent); return its id."""
        reply = self.patient_says(text, chat, consent)
        assert reply.level is not None and reply.level.value in ("emergency", "urgent"), reply

        async def case_id(rt: Runtime) -> int:
            for _ in range(200):
                for view in await rt.cases.store.queue():
                    if view.chat_id == chat:
                        return view.id
                await asyncio.sleep(0.05)
            raise AssertionError(f"no case was opened for chat {chat}")

        return self.call(case_id)

    def reach_patients(self, channel: str = "telegram") -> list[tuple[str, str]]:
        """Deliver case messages to patients on `channel` into the returned list (chat, text)."""
        delivered: list[tuple[str, str]] = []

        async def send(chat_id: str, text: str) -> None:
            delivered.append((chat_id, text))

        self.runtime.cases.patients.register(channel, send)
        return delivered

    def doctor_messages(self, case_id: int) -> list[Message]:
        """The doctors' messages stored in the case's conversation."""

        async def read(rt: Runtime) -> list[Message]:
            def work(s: Session) -> list[Message]:
                esc = s.get(Escalation, case_id)
                assert esc is not None
                query = select(Message).where(
                    Message.conversation_id == esc.conversation_id, Message.kind == "doctor"
                )
                return list(s.exec(query.order_by(col(Message.id))).all())

            return await rt.storage.run(work)

        return self.call(read)


@contextlib.contextmanager
def serving(
    folder: Path, index_dir: Path, llm: LLMBackend, port: int | None = None, **overrides: Any
) -> Iterator[LiveServer]:
    """Serve the web app on a fresh database in `folder`, with `llm` as its model."""
    with pytest.MonkeyPatch.context() as env:
        # As tests/conftest.py's clean_env, for a server that outlives one test.
        for name in list(os.environ):
            if name.startswith("CAREBOT_") and not name.startswith("CAREBOT_TEST_"):
                env.delenv(name)
        for name in ("REDIS_URL", "DATABASE_URL", "TELEGRAM_BOT_TOKEN"):
            env.delenv(name, raising=False)
        env.chdir(folder)
        # Every test client signs in from 127.0.0.1: the per-address limits are raised here
        # unless a test module asks for the shipped ones (tests/dashboard/test_login.py).
        overrides.setdefault("dashboard_login_attempts_per_client", 10_000)
        settings = load_settings(
            data_dir=folder / "data",
            index_dir=index_dir,
            triage_followup_rounds=0,
            dashboard_heartbeat_s=0.5,
            **overrides,
        )
    with LiveServer(settings, llm, port) as server:
        yield server


class PageEvents:
    """A web chat page's event stream (/api/events), read in a thread from the moment it is
    open: every text the server pushed to the page, in order."""

    def __init__(self, web: httpx.Client) -> None:
        self.pushed: list[str] = []
        self.content_type = ""
        self._ready = threading.Event()
        threading.Thread(target=self._read, args=(web,), daemon=True).start()
        assert self._ready.wait(10), "the event stream did not open"
        time.sleep(0.2)  # the server has registered the stream once its first line is read

    def _read(self, web: httpx.Client) -> None:
        # The stream ends with the server (or the read timeout): that is the page closing.
        with (
            contextlib.suppress(httpx.HTTPError),
            web.stream("GET", "/api/events", timeout=30) as res,
        ):
            self.content_type = res.headers["content-type"]
            self._ready.set()
            for line in res.iter_lines():
                if line.startswith("data: "):
                    self.pushed.append(json.loads(line[6:])["text"])

    def wait_for(self, count: int, timeout_s: float = 15) -> list[str]:
        """The texts pushed so far, once there are `count` (or the time is up)."""
        deadline = time.monotonic() + timeout_s
        while len(self.pushed) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.pushed)


def csrf_of(page: str) -> str:
    """The CSRF token of the first form on a page."""
    found = CSRF_INPUT.search(page)
    assert found, "the page has no form with a CSRF token"
    return html.unescape(found.group(1))


def sign_in(
    base: str, username: str, password: str = PASSWORD, next_: str = "/dashboard"
) -> tuple[httpx.Client, httpx.Response]:
    """A client that filled in the login form; returns it and the response to the POST."""
    client = httpx.Client(base_url=base, follow_redirects=False, timeout=30)
    form = client.get("/dashboard/login")
    assert form.status_code == 200, form.text
    res = client.post(
        "/dashboard/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": csrf_of(form.text),
            "next": next_,
        },
    )
    return client, res
