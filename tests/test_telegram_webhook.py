"""Telegram by webhook as a route of the web app, with one worker and with two workers on one
database (SQLite and PostgreSQL): the secret is checked, a chat's messages are answered once
each and in order whichever worker Telegram's requests reach, and a redelivered update is
answered once. The workers are real uvicorn servers; Telegram is the Bot API test server.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bot.llm.base import LLMBackend
from tests.bot_api import BotAPIServer, private_message
from tests.dashboard.live import LiveServer, serving
from tests.fakes import SlowChatModel, scripted
from tests.servers import free_port

ANSWER = "Rest and drink plenty of fluids [1]."
SECRET = "webhook-secret-for-these-tests-0123456789"  # pragma: allowlist secret
HEADER = "X-Telegram-Bot-Api-Secret-Token"


@contextlib.contextmanager
def worker(
    folder: Path,
    index_dir: Path,
    api: BotAPIServer,
    url: str | None = None,
    llm: LLMBackend | None = None,
    **overrides: Any,
) -> Iterator[LiveServer]:
    """One `carebot serve` worker with the bot behind a webhook at `url` (default: its own)."""
    port = free_port()
    with serving(
        folder,
        index_dir,
        llm or scripted(ANSWER),
        port=port,
        telegram_bot_token="123:TEST",
        telegram_api_base_url=api.base_url,
        telegram_webhook_url=url or f"http://127.0.0.1:{port}/telegram-hook",
        telegram_webhook_secret=SECRET,
        **overrides,
    ) as live:
        yield live


def slow() -> LLMBackend:
    return LLMBackend(SlowChatModel(delay_s=0.3))


def post(live: LiveServer, update: dict[str, Any], secret: str | None = SECRET) -> int:
    """POST an update to one worker's route, as Telegram (or a proxy in front) would."""
    headers = {HEADER: secret} if secret is not None else {}
    got = httpx.post(f"{live.url}/telegram-hook", json=update, headers=headers, timeout=30)
    return got.status_code


def replied_to(api: BotAPIServer, chat: int) -> list[int]:
    """The patient message each bot message in the chat answered, in the order sent."""
    answered = []
    for params in api.sent(chat):
        reply = params.get("reply_parameters")
        reply = json.loads(reply) if isinstance(reply, str) else reply
        if isinstance(reply, dict):
            answered.append(int(reply["message_id"]))
    return answered


def test_the_route_checks_the_secret_and_answers_a_redelivered_update_once(
    tmp_path: Path, guideline_index_dir: Path, api: BotAPIServer
) -> None:
    with worker(tmp_path, guideline_index_dir, api) as live:
        (hook,) = [p for m, p in api.calls if m == "setWebhook"]
        assert hook["secret_token"] == SECRET and hook["url"].endswith("/telegram-hook")
        update = {"update_id": 500, "message": private_message(1, 91, text="/help")}
        assert post(live, update, "a-wrong-secret") == 403
        assert post(live, update, None) == 403
        assert httpx.get(f"{live.url}/telegram-hook", timeout=10).status_code == 405
        assert not api.wait_for(lambda: bool(api.texts(91)), 1.0)  # nothing was handled

        assert post(live, update) == 200
        assert api.wait_for(lambda: bool(api.texts(91)), 30)
        assert "/doctor" in api.texts(91)[0]
        assert post(live, update) == 200  # Telegram delivers it again
        # Not JSON, or not an update: taken (Telegram would only send it again), ignored.
        got = httpx.post(
            f"{live.url}/telegram-hook", content=b"\xff{", headers={HEADER: SECRET}, timeout=10
        )
        assert got.status_code == 200
        # The Bot API server's own webhook delivery reaches the same route.
        api.send_update(private_message(2, 91, text="/privacy"))
        assert api.wait_for(lambda: len(api.texts(91)) >= 2, 30)
        assert not api.wait_for(lambda: len(api.texts(91)) > 2, 1.5)
        assert replied_to(api, 91) == [1, 2]


def test_two_workers_answer_a_chat_once_each_and_in_order(
    tmp_path: Path, guideline_index_dir: Path, api: BotAPIServer, database_url: str
) -> None:
    hook = f"http://127.0.0.1:{free_port()}/telegram-hook"  # the proxy's, as Telegram sees it
    # Each answer takes 0.3 s, so a chat's next message reaches the other worker while the
    # previous one is still being answered: only the chat's lease keeps them in order.
    shared: dict[str, Any] = {"database_url": database_url, "early_warning_s": 30.0}
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    with (
        worker(tmp_path / "a", guideline_index_dir, api, hook, slow(), **shared) as a,
        worker(tmp_path / "b", guideline_index_dir, api, hook, slow(), **shared) as b,
    ):
        chats = [301, 302, 303]
        for chat in chats:  # consent first, so each question gets a cited answer
            assert (
                post(a, {"update_id": chat * 100, "message": private_message(1, chat, text="yes")})
                == 200
            )
        assert api.wait_for(lambda: all(api.texts(c) for c in chats), 30)

        # Each chat's next five messages alternate between the workers, posted one after the
        # other as Telegram does, without waiting for the replies; every one is also
        # delivered a second time to the other worker.
        def patient(chat: int) -> None:
            for n in range(2, 7):
                first, second = (a, b) if n % 2 else (b, a)
                update = {
                    "update_id": chat * 100 + n,
                    "message": private_message(
                        n, chat, text=f"Question {n}: how do I treat a mild cold?"
                    ),
                }
                assert post(first, update) == 200
                assert post(second, json.loads(json.dumps(update))) == 200

        threads = [threading.Thread(target=patient, args=(chat,)) for chat in chats]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for chat in chats:
            assert api.wait_for(lambda c=chat: len(replied_to(api, c)) >= 6, 60), replied_to(
                api, chat
            )
        assert not api.wait_for(lambda: any(len(replied_to(api, c)) > 6 for c in chats), 2.0)
        for chat in chats:
            assert replied_to(api, chat) == [1, 2, 3, 4, 5, 6]  # once each, in order
