"""The patient's web chat: a full channel over the one engine.

A chat is known by a random token the server issues, signed, in an HttpOnly cookie (the page
never sees it, a chat id typed into a request body means nothing, and a token the server did
not sign starts a fresh chat: bot/channels/chat_tokens.py); the database keeps only its
SHA-256. Over HTTPS the cookie carries the `__Host-` prefix, so no other site or subdomain
can set it. The page posts messages (the reply streams back as JSON lines), reads its history,
asks for a doctor, deletes its data, and listens on its own event stream for what doctors
write and for case notices. Every request is bounded: body size, messages per chat and per
address, and messages in flight (beyond that the red-flag rules still answer at once).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.channels.chat_tokens import ChatTokens
from bot.early_warning import Send as Warn
from bot.errors import StorageUnavailable
from bot.models import IncomingMessage, Reply
from bot.runtime import Runtime

CHANNEL = "web"
COOKIE = "carebot_chat"  # over plain HTTP (a laptop); over HTTPS it is SECURE_COOKIE
SECURE_COOKIE = "__Host-carebot_chat"  # Secure, Path=/, no Domain: set by this origin only
COOKIE_MAX_AGE_S = 365 * 24 * 3600
MAX_TEXT = 200_000  # characters; longer posts are refused with a clear message
MAX_BODY = 2 * 1024 * 1024  # bytes: MAX_TEXT characters, JSON-escaped, with room to spare
KEEPALIVE_S = 15.0


class ChatPost(BaseModel):
    """A message typed into the web chat (the chat itself is the cookie's)."""

    message_id: str = Field(min_length=1, max_length=64)
    text: str = Field(max_length=MAX_TEXT)
    consent: bool = False


def public_reply(reply: Reply) -> dict[str, Any]:
    """What the page shows, and the triage record; no database ids, model errors or versions."""
    record = reply.triage or {}
    return {
        "text": reply.text,
        "kind": reply.kind,
        "level": reply.level.value if reply.level else None,
        "red_flags": [
            {"rule_id": h.rule_id, "level": h.level.value, "explanation": h.explanation}
            for h in reply.red_flags
        ],
        "citations": [c.model_dump() for c in reply.citations],
        "triage": {k: record.get(k) for k in ("level", "rules", "asked")} if record else None,
    }


def _line(event: str, **data: object) -> bytes:
    return (json.dumps({"type": event, **data}, ensure_ascii=False) + "\n").encode()


def chat_of(token: str) -> str:
    """The chat id stored for a cookie token (the token itself is never stored)."""
    return "w" + hashlib.sha256(token.encode()).hexdigest()[:40]


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 before anything reads it."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send)
            return
        seen, refused = 0, False

        async def counted() -> Message:
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit and not refused:  # chunked, without a declared length
                refused = True
                await _too_large(send)
                return {"type": "http.disconnect"}  # the app stops reading here
            return message

        async def unless_refused(message: Message) -> None:
            if not refused:  # the 413 is the answer; whatever the app says after is dropped
                await send(message)

        await self.app(scope, counted, unless_refused)


async def _too_large(send: Send) -> None:
    body = json.dumps({"error": "the message is too large to read"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class WebPatients:
    """The open event streams of web chats: doctors' messages and case notices go to them."""

    def __init__(self, per_chat: int = 4, backlog: int = 100) -> None:
        self.per_chat, self.backlog = per_chat, backlog
        self._streams: dict[str, list[asyncio.Queue[str]]] = {}

    def open(self, chat_id: str) -> asyncio.Queue[str]:
        """A new stream for the chat (the oldest is dropped beyond `per_chat` tabs)."""
        streams = self._streams.setdefault(chat_id, [])
        if len(streams) >= self.per_chat:
            streams.pop(0).put_nowait("")  # tells that stream to end
        queue: asyncio.Queue[str] = asyncio.Queue(self.backlog)
        streams.append(queue)
        return queue

    def close(self, chat_id: str, queue: asyncio.Queue[str]) -> None:
        streams = self._streams.get(chat_id, [])
        if queue in streams:
            streams.remove(queue)
        if not streams:
            self._streams.pop(chat_id, None)

    async def send(self, chat_id: str, text: str) -> None:
        """Push to every open page of the chat; a closed page reads it in its history."""
        for queue in self._streams.get(chat_id, []):
            if not queue.full():
                queue.put_nowait(text)


class WebLimits:
    """Messages per chat, per address, and in flight at once."""

    def __init__(self, runtime: Runtime) -> None:
        s = runtime.settings
        limits = runtime.limits
        self.per_chat = limits.window(
            "web-chat", s.web_rate_limit_messages, s.web_rate_limit_window_s
        )
        self.per_address = limits.window("web-address", s.web_address_messages_per_minute, 60.0)
        self.in_flight = asyncio.Semaphore(s.web_max_concurrent)


def _tokens(request: Request) -> ChatTokens:
    state = request.app.state  # one per app, made on first use
    tokens: ChatTokens | None = getattr(state, "chat_tokens", None)
    if tokens is None:
        tokens = state.chat_tokens = ChatTokens.from_settings(state.runtime.settings)
    return tokens


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def cookie_name(request: Request) -> str:
    """The chat cookie's name for this request: `__Host-` prefixed over HTTPS."""
    return SECURE_COOKIE if _secure(request) else COOKIE


def _identity(request: Request) -> tuple[str, str | None]:
    """The chat of this browser, and a new token to set when it had none (or had a value
    this server did not issue)."""
    tokens = _tokens(request)
    token = request.cookies.get(cookie_name(request), "")
    if token and tokens.valid(token):
        return chat_of(token), None
    token = tokens.issue()
    return chat_of(token), token


def remember_chat(response: Response, request: Request) -> str:
    """Give a browser without a chat its cookie; return the chat id either way."""
    chat_id, token = _identity(request)
    _remember(response, token, request)
    return chat_id


def _remember(response: Response, token: str | None, request: Request) -> None:
    if token is not None:
        response.set_cookie(
            cookie_name(request),
            token,
            max_age=COOKIE_MAX_AGE_S,
            httponly=True,
            samesite="strict",
            secure=_secure(request),
            path="/",
        )


def _incoming(
    chat_id: str, text: str, message_id: str | None = None, **extra: Any
) -> IncomingMessage:
    return IncomingMessage(
        channel=CHANNEL,
        chat_id=chat_id,
        user_id=chat_id,
        message_id=message_id or uuid.uuid4().hex,
        text=text,
        **extra,
    )


async def _stream(
    answer: Callable[[Warn], Awaitable[Reply]],
    busy: Callable[[Warn], Awaitable[Reply]],
    slots: asyncio.Semaphore,
) -> AsyncIterator[bytes]:
    """Stream a reply; `busy` answers instead when every slot is taken.

    Lines: `warning` (the emergency instruction sent ahead of a slow turn), then one
    `reply`. No draft is streamed: the patient sees only text that passed the groundedness
    check. The slot is taken here, inside the response body, not in the handler: a client
    gone before the body starts never takes one, so no slot can leak.
    """
    work, release = busy, None
    if not slots.locked():
        await slots.acquire()  # free: returns at once
        work, release = answer, slots.release
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def on_warning(reply: Reply) -> None:
        queue.put_nowait(_line("warning", **public_reply(reply)))

    async def run() -> Reply:
        try:
            return await work(on_warning)
        finally:
            if release is not None:
                release()

    # Its own task: a closed browser tab cannot cancel it, the reply is still stored.
    task = asyncio.create_task(run())
    task.add_done_callback(lambda _t: queue.put_nowait(None))
    while (line := await queue.get()) is not None:
        yield line
    yield _line("reply", **public_reply(task.result()))


def chat_routes(runtime_of: Callable[[Request], Runtime], patients: WebPatients) -> APIRouter:
    """The patient's web chat API under /api."""
    router = APIRouter(prefix="/api")

    def limits_of(request: Request) -> WebLimits:
        state = request.app.state  # one set of limits per app, made on first use
        if getattr(state, "web_limits", None) is None:
            state.web_limits = WebLimits(runtime_of(request))
        limits: WebLimits = state.web_limits
        return limits

    @router.post("/messages")
    async def post_message(post: ChatPost, request: Request) -> StreamingResponse:
        runtime = runtime_of(request)
        engine, limits = runtime.engine, limits_of(request)
        chat_id, token = _identity(request)
        msg = _incoming(chat_id, post.text, post.message_id, consent=post.consent)
        address = request.client.host if request.client else "unknown"

        async def answer(warn: Warn) -> Reply:
            if await limits.per_address.check(address) != "ok":
                # Not even stored (one address flooding must not fill the database); the
                # red-flag rules still answer.
                return await engine.turns.fallback(msg, "too_many_requests")
            early = engine.early_warning(msg, warn, runtime.settings.early_warning_s)
            throttle = await limits.per_chat.check(chat_id)
            if throttle != "ok":  # stored, red flags checked; each post gets its own bubble
                noted = await engine.acknowledge(msg, "slow_down", early=early)
                return noted or Reply(text="", kind="noted")
            return await engine.handle(msg, early=early)

        async def busy(_: Warn) -> Reply:
            return await engine.turns.fallback(msg, "web_busy")

        # With every slot taken the rules answer at once (`busy`): nothing queues.
        response = StreamingResponse(
            _stream(answer, busy, limits.in_flight), media_type="application/x-ndjson"
        )
        _remember(response, token, request)
        return response

    @router.get("/history")
    async def history(request: Request) -> JSONResponse:
        runtime = runtime_of(request)
        chat_id, token = _identity(request)
        turns = [] if token else await runtime.storage.chat_turns(CHANNEL, chat_id, 100)
        response = JSONResponse({"messages": [{"role": t.role, "text": t.text} for t in turns]})
        _remember(response, token, request)
        return response

    @router.get("/events")
    async def events(request: Request) -> StreamingResponse:
        chat_id, token = _identity(request)
        queue = patients.open(chat_id)

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b": connected\n\n"
                while True:
                    try:
                        text = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield b": keep-alive\n\n"
                        continue
                    if not text:  # replaced by a newer tab of the same chat
                        return
                    data = json.dumps({"type": "message", "text": text}, ensure_ascii=False)
                    yield f"data: {data}\n\n".encode()
            finally:
                patients.close(chat_id, queue)

        response = StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        _remember(response, token, request)
        return response

    @router.post("/doctor")
    async def ask_for_doctor(request: Request) -> JSONResponse:
        runtime = runtime_of(request)
        chat_id, token = _identity(request)
        reply = await runtime.engine.request_doctor(_incoming(chat_id, "/doctor"))
        response = JSONResponse(public_reply(reply))
        _remember(response, token, request)
        return response

    @router.get("/mydata")
    async def my_data(request: Request) -> Response:
        runtime = runtime_of(request)
        chat_id, token = _identity(request)
        if token is not None:  # a browser without a chat has nothing stored
            return JSONResponse({"error": "nothing is stored for this chat"}, status_code=404)
        try:
            bundle = await runtime.engine.export_data(_incoming(chat_id, "/mydata"))
        except StorageUnavailable:
            return JSONResponse({"error": "try again in a minute"}, status_code=503)
        if bundle is None:
            return JSONResponse({"error": "nothing is stored for this chat"}, status_code=404)
        return JSONResponse(
            bundle,
            headers={"Content-Disposition": 'attachment; filename="carebot-my-data.json"'},
        )

    @router.post("/forget")
    async def forget(request: Request) -> JSONResponse:
        runtime = runtime_of(request)
        chat_id, _ = _identity(request)
        reply = await runtime.engine.forget(_incoming(chat_id, "/forget"))
        response = JSONResponse(public_reply(reply))
        if reply.kind != "error":
            # The next message starts a new chat.
            response.delete_cookie(cookie_name(request), path="/", secure=_secure(request))
        return response

    return router
