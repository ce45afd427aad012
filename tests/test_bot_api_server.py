"""The local Bot API server itself: Telegram's validation, error shapes and update semantics.

Raw HTTP through httpx (form-encoded like python-telegram-bot, or JSON), and one round trip
through python-telegram-bot's own Bot and Application.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import telegram
from telegram.error import BadRequest, NetworkError, RetryAfter
from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes, MessageHandler, filters

from tests.bot_api import (
    BOT,
    NON_TEXT,
    NOT_MODIFIED,
    QUERY_TOO_OLD,
    WEBHOOK_CONFLICT,
    BotAPIServer,
    EntityParseError,
    group_message,
    parse_html,
    parse_markdown_v2,
    private_message,
    visible_text,
)
from tests.servers import free_port

TOKEN = "1:T"


@pytest.fixture
def srv() -> Iterator[BotAPIServer]:
    server = BotAPIServer()
    yield server
    server.stop()


def call(
    srv: BotAPIServer, method: str, *, as_json: bool = False, **params: Any
) -> tuple[int, Any]:
    """One Bot API call; form-encoded with JSON-encoded non-strings, as PTB sends them."""
    url = f"{srv.base_url}/bot{TOKEN}/{method}"
    if as_json:
        response = httpx.post(url, json=params, timeout=10)
    else:
        form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
        response = httpx.post(url, data=form, timeout=10)
    return response.status_code, response.json()


def send(srv: BotAPIServer, text: str, chat_id: int = 5, **params: Any) -> tuple[int, Any]:
    return call(srv, "sendMessage", chat_id=chat_id, text=text, **params)


# --- formatting -----------------------------------------------------------------------------


def test_html_accepts_telegram_markup() -> None:
    assert visible_text("<b>Bold</b> &amp; <i>it</i> &lt;3 &#65;&#x42; &quot;q&quot;") == (
        'Bold & it <3 AB "q"'
    )
    assert visible_text('<a href="https://example.org/?a=1&amp;b=2">link</a>') == "link"
    assert visible_text('<span class="tg-spoiler">s</span><tg-spoiler>t</tg-spoiler>') == "st"
    assert visible_text("<blockquote expandable>q</blockquote><u>u</u><s>s</s><del>d</del>") == (
        "qusd"
    )
    assert visible_text("  <b> padded </b>\n") == "padded"
    text, entities = parse_html('😀<b>x</b><pre><code class="language-py">y</code></pre>')
    assert text == "😀xy"  # the emoji is two UTF-16 code units
    assert entities == [
        {"type": "bold", "offset": 2, "length": 1},
        {"type": "pre", "offset": 3, "length": 1, "language": "py"},
    ]
    _, link = parse_html("<a href='tg://user?id=77'>Pat</a> <a href=example.org>e</a>")
    assert link[0]["type"] == "text_mention" and link[0]["user"]["id"] == 77
    assert link[1] == {"type": "text_link", "offset": 4, "length": 1, "url": "http://example.org/"}


@pytest.mark.parametrize(
    ("html", "reason"),
    [
        ("<p>x</p>", 'Unsupported start tag "p" at byte offset 0'),
        ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("é<b", "Unclosed start tag at byte offset 2"),
        ("salt & pepper", "Character '&' at byte offset 5"),
        ("a&nbsp;b", 'Unsupported HTML entity "&nbsp;"'),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler"'),
        ("<br/>", 'Unsupported start tag "br/"'),
        ("<!-- note -->x", 'Unsupported start tag "!--"'),
        ("<a href=https://example.org>x</a>", "Unexpected end of name token at byte offset 8"),
    ],
)
def test_html_rejects_what_telegram_rejects(srv: BotAPIServer, html: str, reason: str) -> None:
    with pytest.raises(EntityParseError):
        visible_text(html)
    status, body = send(srv, html, parse_mode="HTML")
    assert status == 400 and body["ok"] is False and body["error_code"] == 400
    assert body["description"].startswith("Bad Request: can't parse entities: " + reason)
    assert srv.messages == {} and srv.sent() == []


def test_length_counts_visible_utf16_after_parsing(srv: BotAPIServer) -> None:
    assert send(srv, "a" * 4096)[0] == 200
    assert send(srv, "a" * 4097)[1]["description"] == "Bad Request: message is too long"
    assert send(srv, "<b>" + "a" * 4096 + "</b>", parse_mode="HTML")[0] == 200
    assert send(srv, "&amp;" * 4096, parse_mode="HTML")[0] == 200
    assert send(srv, "😀" * 2048)[0] == 200
    assert send(srv, "😀" * 2048 + "a")[1]["description"] == "Bad Request: message is too long"
    assert send(srv, "a" * 4096 + "  \n")[0] == 200  # trailing whitespace is trimmed first
    for empty in ("", "   ", "<b></b>", "<i> </i>\n"):
        status, body = send(srv, empty, parse_mode="HTML")
        assert (status, body["description"]) == (400, "Bad Request: message text is empty")


def test_parse_mode_chat_id_and_markup_checks(srv: BotAPIServer) -> None:
    assert send(srv, "x", parse_mode="HTMLX")[1]["description"] == (
        "Bad Request: unsupported parse_mode"
    )
    assert send(srv, "<b>x</b>", parse_mode="html")[0] == 200  # case-insensitive, like Telegram
    assert send(srv, "x", chat_id="@nobody")[1]["description"] == "Bad Request: chat not found"  # type: ignore[arg-type]
    text_only = {"inline_keyboard": [[{"text": "no action"}]]}
    assert "Text buttons are unallowed" in send(srv, "x", reply_markup=text_only)[1]["description"]
    too_long = {"inline_keyboard": [[{"text": "b", "callback_data": "x" * 65}]]}
    assert send(srv, "x", reply_markup=too_long)[1]["description"] == (
        "Bad Request: BUTTON_DATA_INVALID"
    )
    assert send(srv, "x", reply_parameters={"message_id": 999})[1]["description"] == (
        "Bad Request: message to be replied not found"
    )


def test_markdown_v2_rules(srv: BotAPIServer) -> None:
    assert parse_markdown_v2(r"*bold* _it_ \. [l](https://example.org)") == (
        "bold it . l",
        [
            {"type": "bold", "offset": 0, "length": 4},
            {"type": "italic", "offset": 5, "length": 2},
            {"type": "text_link", "offset": 10, "length": 1, "url": "https://example.org/"},
        ],
    )
    assert parse_markdown_v2(r"\\\\\_\*\`")[0] == r"\\_*`"
    status, body = send(srv, "Take 2 tablets.", parse_mode="MarkdownV2")
    assert status == 400
    assert body["description"] == (
        "Bad Request: can't parse entities: Character '.' is reserved and must be escaped with "
        "the preceding '\\'"
    )
    assert send(srv, "*unclosed", parse_mode="Markdown")[1]["description"] == (
        "Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 0"
    )


def test_form_values_are_decoded_like_telegram(srv: BotAPIServer) -> None:
    markup = {"inline_keyboard": [[{"text": "Yes", "callback_data": "yes"}]]}
    status, body = send(srv, "[1] {not json}", reply_markup=markup)
    assert status == 200
    assert body["result"]["text"] == "[1] {not json}"
    assert body["result"]["reply_markup"] == markup
    assert srv.sent(5)[0]["reply_markup"] == markup
    status, body = call(srv, "SENDMESSAGE", as_json=True, chat_id=5, text="json body")
    assert status == 200 and body["result"]["message_id"] == 1002
    response = httpx.get(f"{srv.base_url}/bot{TOKEN}/getMe?x=1", timeout=5)
    assert response.json() == {"ok": True, "result": BOT}
    assert call(srv, "noSuchMethod")[0] == 404
    assert httpx.get(f"{srv.base_url}/botnot-a-token/getMe", timeout=5).status_code == 404
    assert srv.methods() == ["sendMessage", "SENDMESSAGE", "getMe", "noSuchMethod"]
    assert srv.count("sendmessage") == 2


# --- fault injection ------------------------------------------------------------------------


def test_fail_next_answers_telegram_error_shape(srv: BotAPIServer) -> None:
    srv.fail_next("sendMessage", retry_after=3)
    status, body = send(srv, "hello")
    assert status == 429
    assert body == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3},
    }
    assert srv.count("sendMessage") == 1 and srv.messages == {} and srv.sent() == []
    srv.fail_next("sendMessage", 2, error_code=403)
    assert send(srv, "a")[1]["description"] == "Forbidden: bot was blocked by the user"
    assert send(srv, "b")[0] == 403
    assert send(srv, "c")[0] == 200
    assert srv.texts(5) == ["c"]
    assert [body["error_code"] for _, _, body in srv.errors()] == [429, 403, 403]


def test_dropped_connection_sends_nothing(srv: BotAPIServer) -> None:
    srv.drop_connection_next("sendMessage")
    with pytest.raises(httpx.TransportError):
        send(srv, "hello")
    assert srv.count("sendMessage") == 1 and srv.messages == {}
    assert send(srv, "again")[0] == 200 and srv.texts(5) == ["again"]


# --- updates --------------------------------------------------------------------------------


def test_get_updates_offsets_confirm_and_forget(srv: BotAPIServer) -> None:
    ids = [srv.send_update(private_message(n, 77, text=f"m{n}")) for n in (1, 2, 3)]
    assert ids == [1, 2, 3] and srv.pending_updates() == 3
    _, body = call(srv, "getUpdates")
    assert [u["update_id"] for u in body["result"]] == [1, 2, 3]
    assert body["result"][0]["message"]["text"] == "m1"
    _, body = call(srv, "getUpdates", offset=3, limit=5)
    assert [u["update_id"] for u in body["result"]] == [3] and srv.pending_updates() == 1
    _, body = call(srv, "getUpdates", offset=1)  # confirmed updates never come back
    assert [u["update_id"] for u in body["result"]] == [3]
    _, body = call(srv, "getUpdates", offset=4, timeout=0)
    assert body["result"] == [] and srv.pending_updates() == 0
    for n in (4, 5, 6):
        srv.send_update(private_message(n, 77, text=f"m{n}"))
    _, body = call(srv, "getUpdates", offset=-1)  # only the last one; earlier ones forgotten
    assert [u["update_id"] for u in body["result"]] == [6] and srv.pending_updates() == 1
    _, body = call(srv, "getUpdates", limit=1)
    assert len(body["result"]) == 1


def test_long_poll_wakes_up_and_newer_poll_takes_over(srv: BotAPIServer) -> None:
    results: list[tuple[int, Any]] = []
    poller = threading.Thread(target=lambda: results.append(call(srv, "getUpdates", timeout=30)))
    started = time.monotonic()
    poller.start()
    assert srv.wait_for(lambda: srv.count("getUpdates") == 1, 5)
    srv.send_update(private_message(1, 77, text="hi"))
    poller.join(5)
    assert results[0][1]["result"][0]["message"]["text"] == "hi"
    assert time.monotonic() - started < 1.0
    call(srv, "getUpdates", offset=2)
    poller = threading.Thread(target=lambda: results.append(call(srv, "getUpdates", timeout=30)))
    poller.start()
    assert srv.wait_for(lambda: srv.count("getUpdates") == 3, 5)
    assert call(srv, "getUpdates", timeout=0)[1]["result"] == []
    poller.join(5)
    assert results[1][0] == 409 and "terminated by other getUpdates" in results[1][1]["description"]


def test_allowed_updates_filters_new_updates(srv: BotAPIServer) -> None:
    call(srv, "getUpdates", allowed_updates=["message"])
    srv.send_update(private_message(1, 77, text="kept"))
    srv.send_callback(77, "dropped")
    srv.send_raw({"update_id": 50, "message_reaction": {"weird": True}})
    _, body = call(srv, "getUpdates")
    assert [next(k for k in u if k != "update_id") for u in body["result"]] == [
        "message",
        "message_reaction",
    ]
    assert len(srv.dropped_updates) == 1
    assert srv.send_raw({"edited_message": {"nonsense": 1}}) == 51


class _Receiver:
    """A stand-in for the bot's webhook endpoint: records POSTs, checks the secret."""

    def __init__(self, secret: str) -> None:
        self.posts: list[tuple[str | None, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                got = self.headers.get("X-Telegram-Bot-Api-Secret-Token")
                receiver.posts.append((got, json.loads(body)))
                self.send_response(200 if got == secret else 403)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.port = free_port()
        self.http = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def test_webhook_delivers_in_order_with_secret(srv: BotAPIServer) -> None:
    receiver = _Receiver("s3cret")
    try:
        srv.send_update(private_message(1, 77, text="queued before"))
        url = f"http://127.0.0.1:{receiver.port}/hook"
        status, body = call(srv, "setWebhook", url=url, secret_token="s3cret", max_connections=5)
        assert (status, body["description"]) == (200, "Webhook was set")
        assert call(srv, "setWebhook", url=url, secret_token="s3cret", max_connections=5)[1][
            "description"
        ] == ("Webhook is already set")
        srv.send_update(private_message(2, 77, text="after"))
        assert srv.wait_for(lambda: len(receiver.posts) == 2 and srv.pending_updates() == 0, 10)
        assert [p[1]["message"]["text"] for p in receiver.posts] == ["queued before", "after"]
        assert {p[0] for p in receiver.posts} == {"s3cret"}
        assert call(srv, "getUpdates") == (
            409,
            {"ok": False, "error_code": 409, "description": WEBHOOK_CONFLICT},
        )
        info = call(srv, "getWebhookInfo")[1]["result"]
        assert info["url"] == url and info["has_custom_certificate"] is False
        assert info["pending_update_count"] == 0 and info["max_connections"] == 5
        assert srv.post_to_webhook({"update_id": 9}, "wrong") == 403
        assert srv.post_to_webhook({"update_id": 9}, None) == 403
        assert call(srv, "setWebhook", url=url, secret_token="no spaces")[0] == 400
        call(srv, "deleteWebhook")
        srv.send_update(private_message(3, 77, text="polled"))
        assert call(srv, "getUpdates")[1]["result"][0]["message"]["text"] == "polled"
        call(srv, "setWebhook", url="http://127.0.0.1:1/refused", drop_pending_updates=True)
        assert srv.pending_updates() == 0
        call(srv, "deleteWebhook", drop_pending_updates=True)
        assert call(srv, "getWebhookInfo")[1]["result"] == {
            "url": "",
            "has_custom_certificate": False,
            "pending_update_count": 0,
        }
    finally:
        receiver.stop()


def test_webhook_retries_then_gives_up() -> None:
    with BotAPIServer(webhook_attempts=2) as srv:
        call(srv, "setWebhook", url=f"http://127.0.0.1:{free_port()}/closed")
        uid = srv.send_update(private_message(1, 77, text="nobody listens"))
        assert srv.wait_for(lambda: len(srv.dropped_updates) == 1, 10)
        assert [d[0] for d in srv.webhook_deliveries] == [uid, uid]
        info = call(srv, "getWebhookInfo")[1]["result"]
        assert info["pending_update_count"] == 0 and "Connection" in info["last_error_message"]


# --- messages and callbacks -----------------------------------------------------------------


def test_edits_follow_telegram(srv: BotAPIServer) -> None:
    keyboard = {"inline_keyboard": [[{"text": "OK", "callback_data": "ok"}]]}
    sent = send(srv, "<b>Step 1</b>", parse_mode="HTML", reply_markup=keyboard)[1]["result"]
    assert sent["text"] == "Step 1" and sent["entities"][0]["type"] == "bold"
    assert sent["from"] == BOT and sent["chat"]["type"] == "private"
    mid = sent["message_id"]

    def edit(text: str, **params: Any) -> tuple[int, Any]:
        return call(srv, "editMessageText", chat_id=5, message_id=mid, text=text, **params)

    assert edit("<b>Step 1</b>", parse_mode="HTML", reply_markup=keyboard) == (
        400,
        {"ok": False, "error_code": 400, "description": NOT_MODIFIED},
    )
    status, body = edit("Step 1", reply_markup=keyboard)  # same text, bold dropped: modified
    assert status == 200 and "entities" not in body["result"] and "edit_date" in body["result"]
    status, body = edit("Step 2")  # no reply_markup: the keyboard goes away
    assert status == 200 and "reply_markup" not in body["result"]
    assert srv.texts(5) == ["Step 2"]
    record = srv.messages[(5, mid)]
    assert [v["text"] for v in record["versions"]] == ["Step 1", "Step 1", "Step 2"]
    assert record["reply_markup"] is None and record["parse_mode"] is None
    markup_call = call(srv, "editMessageReplyMarkup", chat_id=5, message_id=mid)
    assert markup_call[1]["description"] == NOT_MODIFIED
    assert call(srv, "editMessageText", chat_id=5, message_id=1, text="x")[1]["description"] == (
        "Bad Request: message to edit not found"
    )
    srv.send_update(private_message(7, 5, text="user's own"))
    assert call(srv, "editMessageText", chat_id=5, message_id=7, text="x")[1]["description"] == (
        "Bad Request: message can't be edited"
    )
    assert call(srv, "deleteMessage", chat_id=5, message_id=mid)[1]["result"] is True
    assert call(srv, "deleteMessage", chat_id=5, message_id=mid)[1]["description"] == (
        "Bad Request: message to delete not found"
    )
    assert srv.texts(5) == []


def test_callback_queries_are_valid_once(srv: BotAPIServer) -> None:
    keyboard = {"inline_keyboard": [[{"text": "Yes", "callback_data": "yes"}]]}
    send(srv, "first", chat_id=77)
    mid = send(srv, "Consent?", chat_id=77, reply_markup=keyboard)[1]["result"]["message_id"]
    query_id = srv.send_callback(77, "yes")
    update = call(srv, "getUpdates")[1]["result"][-1]
    query = update["callback_query"]
    assert query["id"] == query_id and query["data"] == "yes" and query["from"]["id"] == 77
    assert query["message"]["message_id"] == mid and query["message"]["from"] == BOT
    assert query["message"]["reply_markup"] == keyboard
    assert update["update_id"] == srv.last_update_id
    cq = telegram.Update.de_json(update, None).callback_query
    assert cq is not None and cq.message is not None and cq.message.text == "Consent?"
    assert call(srv, "answerCallbackQuery", callback_query_id=query_id)[1]["result"] is True
    again = call(srv, "answerCallbackQuery", callback_query_id=query_id)
    assert again == (400, {"ok": False, "error_code": 400, "description": QUERY_TOO_OLD})
    assert call(srv, "answerCallbackQuery", callback_query_id="123")[1]["description"] == (
        QUERY_TOO_OLD
    )
    assert list(srv.callback_answers) == [query_id]


def test_commands_descriptions_and_chat(srv: BotAPIServer) -> None:
    commands = [{"command": "start", "description": "Begin"}]
    assert call(srv, "setMyCommands", commands=commands)[1]["result"] is True
    call(
        srv,
        "setMyCommands",
        commands=[{"command": "start", "description": "Los"}],
        language_code="de",
    )
    assert srv.commands() == commands and srv.commands("de")[0]["description"] == "Los"
    assert call(srv, "getMyCommands", language_code="de")[1]["result"][0]["description"] == "Los"
    assert call(srv, "setMyCommands", commands=[{"command": "Start", "description": "x"}])[1][
        "description"
    ] == ("Bad Request: BOT_COMMAND_INVALID")
    call(srv, "deleteMyCommands", language_code="de")
    assert srv.commands("de") == [] and srv.commands() == commands
    for method, key in (
        ("setMyDescription", "description"),
        ("setMyShortDescription", "short_description"),
    ):
        assert call(srv, method, **{key: "CareBot"})[1]["result"] is True
    assert call(srv, "setChatMenuButton", menu_button={"type": "commands"})[1]["result"] is True
    assert call(srv, "sendChatAction", chat_id=5, action="typing")[1]["result"] is True
    assert call(srv, "sendChatAction", chat_id=5, action="dancing")[0] == 400
    chat = call(srv, "getChat", chat_id=77)[1]["result"]
    full = telegram.ChatFullInfo.de_json(chat, None)
    assert full is not None and full.type == "private" and full.id == 77
    assert call(srv, "getChat", chat_id=-100123)[1]["description"] == "Bad Request: chat not found"
    assert call(srv, "logOut")[1]["result"] is True and call(srv, "close")[1]["result"] is True


def test_non_text_builders_match_ptb_shapes() -> None:
    for kind, content in NON_TEXT.items():
        message = telegram.Message.de_json(private_message(3, 77, **content), None)
        assert message is not None and message.effective_attachment is not None, kind
        assert message.text is None
    assert telegram.Message.de_json(private_message(3, 77, **NON_TEXT["voice"]), None).voice
    group = telegram.Message.de_json(group_message(4, 77, -100, text="hi"), None)
    assert group.chat.type == "group" and group.from_user.id == 77
    command = private_message(1, 77, text="/start now", language_code=None, first_name="Ann")
    assert command["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert "language_code" not in command["from"] and command["chat"]["first_name"] == "Ann"


def test_wait_helpers(srv: BotAPIServer) -> None:
    threading.Timer(0.1, lambda: send(srv, "later")).start()
    assert srv.wait_for(lambda: srv.texts(5) == ["later"], 5)
    assert not srv.wait_for(lambda: srv.count("nothing") > 0, 0.05)


# --- python-telegram-bot against the server -------------------------------------------------


async def test_ptb_bot_round_trip(srv: BotAPIServer) -> None:
    bot = telegram.Bot(token=TOKEN, base_url=f"{srv.base_url}/bot")
    await bot.initialize()
    try:
        assert bot.username == BOT["username"]
        message = await bot.send_message(chat_id=5, text="<b>x</b>", parse_mode="HTML")
        assert message.text == "x" and message.entities[0].type == "bold"
        assert srv.sent(5)[0]["text"] == "<b>x</b>" and srv.texts(5) == ["x"]

        srv.fail_next("sendMessage", retry_after=1)
        with pytest.raises(RetryAfter, match="Retry in 1 seconds"):
            await bot.send_message(chat_id=5, text="y")
        # PTB drops "Bad Request: " and capitalize()s the rest, lowering TDLib's capitals
        with pytest.raises(BadRequest, match='unsupported start tag "p" at byte offset 0'):
            await bot.send_message(chat_id=5, text="<p>x</p>", parse_mode="HTML")
        with pytest.raises(BadRequest, match="Message is not modified"):
            await bot.edit_message_text(
                "<b>x</b>", chat_id=5, message_id=message.message_id, parse_mode="HTML"
            )
        srv.drop_connection_next("sendMessage")
        with pytest.raises(NetworkError):
            await bot.send_message(chat_id=5, text="lost")
        assert srv.texts(5) == ["x"] and srv.count("sendMessage") == 4
    finally:
        await bot.shutdown()


async def test_ptb_application_polls_and_confirms(srv: BotAPIServer) -> None:
    async def start(update: telegram.Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("welcome")

    async def echo(update: telegram.Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None and update.effective_message.text
        await update.effective_message.reply_text(update.effective_message.text.upper())

    app = ApplicationBuilder().token(TOKEN).base_url(f"{srv.base_url}/bot").build()
    app.add_handler(CommandHandler("start", start))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0.0)
        srv.send_update(private_message(1, 77, text="/start"))
        srv.send_update(private_message(2, 77, text="sore throat"))
        assert await srv.await_for(lambda: len(srv.sent(77)) == 2, 15)
        await app.updater.stop()
        await app.stop()
    assert srv.texts(77) == ["welcome", "SORE THROAT"]
    assert srv.pending_updates() == 0  # the stop confirmed the last offset
    assert not await srv.await_for(lambda: False, 0.05)
    await asyncio.sleep(0)
