"""The parts the Telegram channel is built from: splitting, escaping, rate limits, queues."""

from __future__ import annotations

import asyncio

import pytest

from bot.channels.telegram.channel import command_of
from bot.channels.telegram.formatting import split_message, to_html, utf16_len
from bot.chat_queues import ChatQueues, Job
from bot.memory.base import Turn
from bot.memory.inmemory import SWEEP_EVERY, InMemorySessionStore
from bot.rate_limit import ChatRateLimit
from tests.bot_api import visible_text


@pytest.mark.parametrize(
    "text",
    [
        "\n\n".join(f"Paragraph {i}. " + "word " * 200 for i in range(12)),
        "\n".join(f"line {i} " + "x" * 90 for i in range(100)),
        "One long sentence. " * 400,
        "x" * 10_000,
        "😀" * 5000,  # outside the BMP: two UTF-16 units each
        "发烧时多喝水。" * 1000,
    ],
)
def test_split_keeps_every_part_under_the_limit_and_loses_nothing(text: str) -> None:
    parts = split_message(text)
    assert len(parts) > 1
    assert all(0 < utf16_len(p) <= 4096 for p in parts)
    assert "".join("".join(p.split()) for p in parts) == "".join(text.split())


def test_split_prefers_paragraph_ends() -> None:
    paragraphs = [f"Paragraph {i}: " + "word " * 150 for i in range(10)]
    parts = split_message("\n\n".join(p.strip() for p in paragraphs))
    assert all(p.startswith("Paragraph") for p in parts)
    assert split_message("   ") == []
    assert split_message("short") == ["short"]


@pytest.mark.parametrize(
    "text",
    ["<b>bold</b> & <i>", "5 < 6 > 4 && x", "</i>", "&amp; &lt;", "a <script>alert(1)</script>"],
)
def test_html_escaping_shows_exactly_what_was_written(text: str) -> None:
    assert visible_text(to_html(text)) == text


def test_markdown_bold_and_warning_lines_become_bold() -> None:
    assert to_html("take **two** tablets") == "take <b>two</b> tablets"
    assert to_html("⚠️ Call 112 now").startswith("<b>⚠️")


def test_commands_are_parsed_like_telegram() -> None:
    assert command_of("/start") == ("start", "")
    assert command_of("/Help@carebot_test_bot now") == ("help", "now")
    assert command_of("/ what") is None
    assert command_of("hello /start") is None
    assert command_of("/发烧") is None


def test_rate_limit_counts_a_sliding_window_and_notifies_once() -> None:
    now = [0.0]
    limit = ChatRateLimit(3, 10.0, clock=lambda: now[0])
    assert [limit.check("a") for _ in range(5)] == ["ok", "ok", "ok", "notify", "quiet"]
    assert limit.check("b") == "ok"  # chats are counted apart
    now[0] = 11.0
    assert limit.check("a") == "ok"
    now[0] = 100.0
    limit.prune()
    assert limit.check("a") == "ok"


async def test_chat_queues_keep_order_per_chat_and_run_chats_concurrently() -> None:
    queues = ChatQueues()
    done: list[str] = []
    gate = asyncio.Event()

    def job(name: str, wait: bool = False) -> Job:
        async def run() -> None:
            if wait:
                await gate.wait()
            if name == "a2":
                raise ValueError("a failing job must not stop its chat")
            done.append(name)

        return run

    queues.submit("a", job("a1", wait=True))
    queues.submit("a", job("a2"))
    queues.submit("a", job("a3"))
    queues.submit("b", job("b1"))
    await asyncio.sleep(0.05)
    assert done == ["b1"]  # chat b was not held up by chat a
    gate.set()
    assert await queues.join(timeout_s=5)
    assert done == ["b1", "a1", "a3"]
    assert queues.pending() == 0


async def test_a_flooding_chat_cannot_grow_its_queue_without_bound() -> None:
    queues = ChatQueues(max_per_chat=3)
    gate = asyncio.Event()
    ran: list[int] = []

    def job(n: int) -> Job:
        async def run() -> None:
            await gate.wait()
            ran.append(n)

        return run

    await asyncio.sleep(0)
    accepted = [queues.submit("flood", job(n)) for n in range(6)]
    assert accepted == [True, True, True, False, False, False]
    assert queues.submit("calm", job(99))  # other chats are unaffected
    gate.set()
    assert await queues.join(timeout_s=5)
    assert sorted(ran) == [0, 1, 2, 99]


def test_rate_limit_forgets_quiet_chats() -> None:
    now = [0.0]
    limit = ChatRateLimit(3, 10.0, clock=lambda: now[0])
    for n in range(1000):
        limit.check(f"chat-{n}")
    now[0] = 11.0
    limit.prune()
    limit.check("new")
    assert list(limit._seen) == ["new"] and limit._told == {}


async def test_the_embedded_memory_drops_chats_that_never_come_back() -> None:
    now = [0.0]
    store = InMemorySessionStore(ttl_s=60, max_turns=5, clock=lambda: now[0])
    for n in range(SWEEP_EVERY - 1):
        await store.append(f"once-{n}", Turn(role="patient", text="hi"))
    now[0] = 61.0  # every one of them expired, and none is read again
    await store.append("still-here", Turn(role="patient", text="hi"))
    assert len(store) == 1
