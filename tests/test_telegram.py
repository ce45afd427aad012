"""The minimal Telegram adapter against a Bot API server on loopback (PTB's real HTTP code)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from bot.channels.telegram import TEXT_ONLY, start_telegram
from tests.bot_api import BotAPIServer, private_message
from tests.conftest import RuntimeFactory
from tests.fakes import scripted


@pytest.fixture
def api() -> Iterator[BotAPIServer]:
    server = BotAPIServer()
    yield server
    server.stop()


async def wait_sent(api: BotAPIServer, count: int, timeout_s: float = 30) -> list[dict]:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout_s
    # The server records calls on its own thread: poll it.
    while len(api.sent()) < count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return api.sent()


async def test_telegram_consent_emergency_and_non_text(
    make_runtime: RuntimeFactory, api: BotAPIServer
) -> None:
    rt = await make_runtime(
        scripted("Gargle with warm salty water [1]."),
        telegram_bot_token="123:TEST",
        telegram_api_base_url=api.base_url,
    )
    await start_telegram(rt)
    try:
        api.send_update(private_message(1, 77, text="/start"))
        sent = await wait_sent(api, 1)
        assert 'Reply "yes"' in sent[0]["text"] and int(sent[0]["chat_id"]) == 77

        api.send_update(private_message(2, 77, text="crushing chest pain and sweating"))
        sent = await wait_sent(api, 2)
        assert "Call 112 now" in sent[1]["text"]

        api.send_update(
            private_message(
                3, 77, photo=[{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]
            )
        )
        sent = await wait_sent(api, 3)
        assert sent[2]["text"] == TEXT_ONLY

        group = private_message(4, 77, text="I can't breathe")
        group["chat"] = {"id": -100, "type": "group", "title": "family"}
        api.send_update(group)
        api.send_update(private_message(5, 77, text="yes"))
        sent = await wait_sent(api, 4)
        assert len(sent) == 4 and all(int(s["chat_id"]) == 77 for s in sent)
    finally:
        await rt.aclose()
    assert "getMe" in [method for method, _ in api.calls]
