"""The Telegram channel end to end: python-telegram-bot's own HTTP code against a Bot API
server on loopback (tests/bot_api.py), CareBot's real engine, database and guideline index.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from bot.channels.telegram import start_telegram
from bot.channels.telegram.delivery import Sender
from bot.channels.telegram.formatting import LIMIT
from bot.runtime import Runtime
from bot.storage.tables import AuditEvent, ChannelUpdate, Conversation, Message, Patient
from tests.bot_api import NON_TEXT, BotAPIServer, group_message, private_message
from tests.conftest import RuntimeFactory
from tests.fakes import scripted

ANSWER = "Gargle with warm salty water and drink plenty of fluids [1]."
Start = Callable[..., Awaitable[Runtime]]


@pytest.fixture
def start(api: BotAPIServer, make_runtime: RuntimeFactory, tmp_path: Path) -> Start:
    """Start a runtime with the Telegram channel on the test Bot API server."""

    async def build(llm: Any = None, **overrides: Any) -> Runtime:
        overrides.setdefault("data_dir", tmp_path / "data")
        runtime = await make_runtime(
            llm or scripted(ANSWER),
            telegram_bot_token="123:TEST",
            telegram_api_base_url=api.base_url,
            **overrides,
        )
        await start_telegram(runtime)
        return runtime

    return build


async def replies(api: BotAPIServer, chat: int, count: int, timeout_s: float = 30) -> list[str]:
    """Wait until the chat has `count` finished messages from the bot; return their texts.

    A streamed draft ends in "…" until the final reply replaces it.
    """

    def done() -> bool:
        texts = api.texts(chat)
        return len(texts) >= count and not any(t.endswith("…") for t in texts)

    await api.await_for(done, timeout_s)
    return api.texts(chat)


async def settle(api: BotAPIServer, seconds: float = 1.5) -> None:
    """Let a few polling rounds pass (to show nothing more arrives)."""
    del api
    await asyncio.sleep(seconds)


def rows(rt: Runtime, table: Any) -> list[Any]:
    with Session(rt.storage.engine) as s:
        return list(s.exec(select(table)).all())


async def consent(api: BotAPIServer, chat: int) -> None:
    api.send_update(private_message(1, chat, text="/start"))
    await replies(api, chat, 1)
    api.send_callback(chat, "consent:yes")
    await replies(api, chat, 2)


async def test_consent_flow_holds_the_question_and_answers_it_with_citations(
    start: Start, api: BotAPIServer
) -> None:
    rt = await start()
    api.send_update(private_message(1, 77, text="/start"))
    texts = await replies(api, 77, 1)
    assert "not a doctor" in texts[0] and "Call 112" not in texts[0]
    welcome = api.sent(77)[0]
    buttons = [
        b["callback_data"] for row in welcome["reply_markup"]["inline_keyboard"] for b in row
    ]
    assert buttons == ["consent:yes", "consent:no"]

    # Nothing medical before consent: the question is held and the consent asked again.
    api.send_update(private_message(2, 77, text="How can I soothe a sore throat?"))
    texts = await replies(api, 77, 2)
    assert 'Reply "yes"' in texts[1] and "[1]" not in texts[1]
    assert len(rt.llm.model.prompts) == 0  # type: ignore[attr-defined]

    api.send_callback(77, "consent:yes")
    texts = await replies(api, 77, 3)
    assert "[1]" in texts[2] and "Sources:" in texts[2] and "Sore throat" in texts[2]
    assert api.count("answerCallbackQuery") == 1
    assert api.count("editMessageReplyMarkup") >= 1  # the pressed buttons are removed
    patient = rows(rt, Patient)[0]
    assert patient.consent_at is not None

    # Declining is answered kindly; nothing more is asked.
    api.send_update(private_message(3, 78, text="/start"))
    await replies(api, 78, 1)
    api.send_callback(78, "consent:no")
    texts = await replies(api, 78, 2)
    assert "won't read your health questions" in texts[1]


async def test_emergency_is_answered_before_consent_and_answers_are_never_drafts(
    start: Start, api: BotAPIServer
) -> None:
    rt = await start()
    api.send_update(private_message(1, 80, text="crushing chest pain and sweating"))
    texts = await replies(api, 80, 1)
    assert "Call 112 now" in texts[0]
    assert "<b>" in api.sent(80)[0]["text"]  # the warning line is bold
    assert api.sent(80)[0]["parse_mode"] == "HTML"

    await consent(api, 81)
    api.send_update(private_message(2, 81, text="How can I soothe a sore throat?"))
    texts = await replies(api, 81, 3)
    final = api.messages[(81, max(m for c, m in api.messages if c == 81))]
    assert "[1]" in texts[2]
    # "typing..." while the answer is written and checked, then the answer in one message,
    # never a draft that the groundedness check might have replaced.
    assert len(final["versions"]) == 1 and "sendChatAction" in api.methods()
    assert rt.engine.locks is not None


async def test_html_is_escaped_and_long_replies_split_on_paragraphs(
    start: Start, api: BotAPIServer
) -> None:
    rt = await start()
    await consent(api, 82)
    api.send_update(private_message(2, 82, text="my throat hurts <b>badly</b> & I have </i> fever"))
    texts = await replies(api, 82, 3)
    assert texts[2]  # answered: the tags and ampersand broke nothing

    bot = await _application_bot(rt)
    sender = Sender(bot, 82)
    paragraphs = [f"Paragraph {i}: <tag> & {'word ' * 150}".strip() for i in range(20)]
    long_text = "\n\n".join(paragraphs)
    sent = await sender.send(long_text)
    assert len(sent) > 1
    shown = api.texts(82)[-len(sent) :]
    assert all(len(t) <= LIMIT for t in shown)
    assert "\n\n".join(shown) == long_text  # split at paragraph ends, nothing lost
    assert all(t.startswith("Paragraph") for t in shown)


async def _application_bot(rt: Runtime) -> Any:
    from telegram import Bot

    bot = Bot(token="123:TEST", base_url=f"{rt.settings.telegram_api_base_url}/bot")
    await bot.initialize()
    return bot


async def test_every_non_text_message_gets_a_kind_answer_and_is_stored(
    start: Start, api: BotAPIServer
) -> None:
    rt = await start()
    for i, content in enumerate(NON_TEXT.values(), start=1):
        api.send_update(private_message(i, 83, **content))
    texts = await replies(api, 83, len(NON_TEXT))
    by_kind = dict(zip(NON_TEXT, texts, strict=True))
    assert "voice" in by_kind["voice"] and "type" in by_kind["voice"]
    assert "photos" in by_kind["photo"]
    assert "files" in by_kind["document"]
    assert "locations" in by_kind["location"]
    assert "polls" in by_kind["poll"]
    stored = [m for m in rows(rt, Message) if m.direction == "in"]
    assert len(stored) == len(NON_TEXT)
    assert {m.meta["attachments"][0] for m in stored} >= {"voice", "photo", "sticker", "contact"}

    # A photo whose caption describes an emergency is answered as one.
    api.send_update(
        private_message(99, 83, caption="he collapsed and is not breathing", **NON_TEXT["photo"])
    )
    texts = await replies(api, 83, len(NON_TEXT) + 1)
    assert "Call 112 now" in texts[-1]


async def test_forget_deletes_database_rows_session_memory_and_inbox(
    start: Start, api: BotAPIServer
) -> None:
    rt = await start()
    await consent(api, 84)
    api.send_update(private_message(2, 84, text="How can I soothe a sore throat?"))
    await replies(api, 84, 3)
    api.send_update(private_message(3, 85, text="/start"))  # another patient stays
    await replies(api, 85, 1)
    assert await rt.sessions.history("telegram:84")

    api.send_update(private_message(4, 84, text="/forget"))
    texts = await replies(api, 84, 4)
    assert "cannot be undone" in texts[3]
    api.send_callback(84, "forget:yes")
    texts = await replies(api, 84, 5)
    assert "everything I had stored about you is deleted" in texts[4]

    await settle(api, 0.5)
    assert [p.channel_user_id for p in rows(rt, Patient)] == ["85"]
    assert [c.chat_id for c in rows(rt, Conversation)] == ["85"]
    assert all(m.conversation_id == rows(rt, Conversation)[0].id for m in rows(rt, Message))
    assert all(u.chat_id != "84" for u in rows(rt, ChannelUpdate))
    assert await rt.sessions.history("telegram:84") == []
    with Session(rt.storage.engine) as s:  # no state row is left for the chat either
        assert s.exec(select(Conversation).where(Conversation.chat_id == "84")).first() is None
    forgotten = [e for e in rows(rt, AuditEvent) if e.action == "patient.forgotten"]
    assert len(forgotten) == 1 and forgotten[0].details["messages"] >= 4

    # Keeping the data deletes nothing.
    api.send_update(private_message(5, 85, text="/forget"))
    await replies(api, 85, 2)
    api.send_callback(85, "forget:no")
    texts = await replies(api, 85, 3)
    assert texts[2] == "Nothing was deleted."
    assert len(rows(rt, Patient)) == 1


async def test_rate_limits_and_network_errors_lose_and_duplicate_nothing(
    start: Start, api: BotAPIServer
) -> None:
    await start()
    api.send_update(private_message(1, 86, text="/help"))
    await replies(api, 86, 1)

    api.fail_next("sendMessage", retry_after=1)
    api.send_update(private_message(2, 86, text="/privacy"))
    texts = await replies(api, 86, 2)
    assert "Telegram account number" in texts[1] and "deleted 365 days after" in texts[1]

    api.drop_connection_next("sendMessage")
    api.send_update(private_message(3, 86, text="/help"))
    texts = await replies(api, 86, 3)
    await settle(api)
    assert len(api.texts(86)) == 3  # each reply exactly once
    assert [s.get("reply_to_message_id") or _reply_to(s) for s in api.sent(86)] == [1, 2, 3]

    # A reply Telegram refuses outright is logged; the bot keeps serving.
    api.fail_next("sendMessage", error_code=400, description="Bad Request: chat not found")
    api.send_update(private_message(4, 86, text="/help"))
    api.send_update(private_message(5, 86, text="/privacy"))
    texts = await replies(api, 86, 4)
    assert "personal data" in texts[3]


def _reply_to(params: dict[str, Any]) -> int | None:
    ref = params.get("reply_parameters") or {}
    return int(ref["message_id"]) if "message_id" in ref else None


async def test_a_flood_is_rate_limited_politely_but_red_flags_still_answered(
    start: Start, api: BotAPIServer
) -> None:
    rt = await start(telegram_rate_limit_messages=3, telegram_rate_limit_window_s=30)
    for i in range(1, 20):
        api.send_update(private_message(i, 87, text="/help"))
    api.send_update(private_message(20, 87, text="my son is unconscious and not breathing"))
    texts = await replies(api, 87, 5)
    await settle(api)
    texts = api.texts(87)
    assert sum("faster than I can answer" in t for t in texts) == 1
    assert sum("Call 112 now" in t for t in texts) == 1
    assert len(texts) == 5  # 3 answers, 1 notice, the emergency
    stored = [m for m in rows(rt, Message) if m.direction == "in"]
    assert len(stored) == 20  # nothing lost
    assert sum(m.status == "noted" for m in stored) == 15


async def test_edits_are_retriaged_only_when_they_add_red_flags(
    start: Start, api: BotAPIServer
) -> None:
    await start()
    await consent(api, 88)
    api.send_update(private_message(2, 88, text="I have a mild headache"))
    await replies(api, 88, 3)
    edited = private_message(2, 88, text="I have a mild headache today", edit_date=int(time.time()))
    api.send_edited(edited)
    await settle(api)
    assert len(api.texts(88)) == 3
    worse = private_message(
        2,
        88,
        text="worst headache of my life, sudden, and my face is drooping",
        edit_date=int(time.time()) + 5,
    )
    api.send_edited(worse)
    texts = await replies(api, 88, 4)
    assert "Call 112 now" in texts[3]


async def test_groups_malformed_updates_and_commands_menu(start: Start, api: BotAPIServer) -> None:
    rt = await start()
    api.send_update(group_message(1, 89, -1001, text="I can't breathe"))
    api.send_raw({"message": {"message_id": 2, "text": "no chat, no date"}})
    api.send_raw({"callback_query": {"id": "x"}})
    api.send_update(private_message(3, 89, text="/help"))
    texts = await replies(api, 89, 1)
    assert "/doctor" in texts[0]
    await settle(api)
    assert api.sent(-1001) == []
    assert api.pending_updates() == 0  # polling moved past the malformed ones
    assert [c["command"] for c in api.commands()][:2] == ["start", "help"]
    assert (
        api.commands("zh")
        and api.commands("zh")[0]["description"] != api.commands()[0]["description"]
    )
    assert len(rows(rt, Patient)) == 1


async def test_doctor_and_language_commands(start: Start, api: BotAPIServer) -> None:
    rt = await start()
    await consent(api, 90)
    api.send_update(private_message(2, 90, text="/doctor"))
    texts = await replies(api, 90, 3)
    assert "asked for a doctor" in texts[2]
    api.send_update(private_message(3, 90, text="/doctor"))
    texts = await replies(api, 90, 4)
    assert "already with our doctors" in texts[3]
    from bot.storage.tables import Escalation

    cases = rows(rt, Escalation)
    assert len(cases) == 1 and cases[0].opened_by == "patient"

    api.send_update(private_message(4, 90, text="/language"))
    await replies(api, 90, 5)
    api.send_callback(90, "lang:zh")
    texts = await replies(api, 90, 6)
    assert "中文" in texts[5]
    assert rows(rt, Patient)[0].language == "zh"


async def test_restart_mid_conversation_processes_nothing_twice_and_loses_nothing(
    start: Start, api: BotAPIServer
) -> None:
    rt = await start()
    await consent(api, 92)
    api.send_update(private_message(2, 92, text="How can I soothe a sore throat?"))
    await replies(api, 92, 3)
    await rt.aclose()

    # While CareBot is down the patient writes again; Telegram keeps the update.
    api.send_update(private_message(3, 92, text="And what about a cough?"))
    # A kept but unfinished update (as after a crash mid-answer) is replayed on start.
    with Session(rt.storage.engine) as s:
        s.add(
            ChannelUpdate(
                channel="telegram",
                update_id=90_000,
                chat_id="92",
                payload={"update_id": 90_000, "message": private_message(4, 92, text="/help")},
            )
        )
        s.commit()
    rt2 = await start()
    texts = await replies(api, 92, 5)
    await settle(api)
    assert len(api.texts(92)) == 5, "|".join(t[:25] for t in api.texts(92))
    incoming = [m for m in rows(rt2, Message) if m.direction == "in"]
    assert sorted(m.channel_message_id for m in incoming).count("2") == 1
    assert all(m.status != "received" for m in incoming)
    assert {u.status for u in rows(rt2, ChannelUpdate)} == {"done"}
    assert all(u.payload is None for u in rows(rt2, ChannelUpdate))  # patient text dropped
    assert "/doctor" in texts[4] or "/doctor" in texts[3]
