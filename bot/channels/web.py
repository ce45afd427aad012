"""The web chat: a single page at / and a streaming JSON-lines endpoint for messages.

The doctors' dashboard is served by the same app, under /dashboard (bot.dashboard).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from bot.dashboard.app import mount_dashboard
from bot.errors import MemoryUnavailable, StorageUnavailable
from bot.models import IncomingMessage, Reply
from bot.runtime import Runtime
from bot.workers import RETRIEVAL
from rag.errors import IndexUnavailable

logger = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("static") / "chat.html"
MAX_TEXT = 200_000  # characters; longer posts are refused with a clear message


class ChatPost(BaseModel):
    """A message typed into the web chat."""

    chat_id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    message_id: str = Field(min_length=1, max_length=64)
    text: str = Field(max_length=MAX_TEXT)
    consent: bool = False


def _line(event: str, **data: object) -> bytes:
    return (json.dumps({"type": event, **data}, ensure_ascii=False) + "\n").encode()


async def _stream_reply(runtime: Runtime, msg: IncomingMessage) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def on_delta(piece: str) -> None:
        queue.put_nowait(piece)

    # The engine runs as its own task so that a closed browser tab cannot cancel it:
    # the reply is still produced and stored.
    task = asyncio.create_task(runtime.engine.handle(msg, on_delta))
    task.add_done_callback(lambda _t: queue.put_nowait(None))
    while (piece := await queue.get()) is not None:
        yield _line("delta", text=piece)
    reply: Reply = task.result()
    yield _line("reply", **reply.model_dump(mode="json"))


def create_web_app(start: Callable[[], Awaitable[Runtime]]) -> FastAPI:
    """Build the FastAPI app; `start` builds the runtime inside the app's lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await start()
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.aclose()

    app = FastAPI(title="CareBot", lifespan=lifespan, docs_url=None, redoc_url=None)
    mount_dashboard(app)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        return JSONResponse({"error": f"the message could not be read ({problems})"}, 422)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.post("/api/messages")
    async def post_message(post: ChatPost, request: Request) -> StreamingResponse:
        msg = IncomingMessage(
            channel="web",
            chat_id=post.chat_id,
            user_id=post.chat_id,
            message_id=post.message_id,
            text=post.text,
            consent=post.consent,
        )
        return StreamingResponse(
            _stream_reply(request.app.state.runtime, msg), media_type="application/x-ndjson"
        )

    @app.get("/healthz")
    async def health(request: Request) -> JSONResponse:
        runtime: Runtime = request.app.state.runtime
        checks = {"database": "ok", "memory": "ok", "llm": runtime.llm.name, "guidelines": "ok"}
        try:
            await runtime.storage.ping()
        except StorageUnavailable:
            checks["database"] = "unavailable"
        try:
            # Without the index CareBot still answers emergencies and says it found no
            # guideline: degraded, not down.
            await RETRIEVAL.run(runtime.engine.answerer.retriever.index.count)
        except IndexUnavailable:
            checks["guidelines"] = "unavailable (answers say no guideline was found)"
        try:
            await runtime.sessions.ping()
        except MemoryUnavailable:
            checks["memory"] = "unavailable (using the database)"
        checks["doctors_alerts"] = await runtime.cases.alert_status(
            runtime.settings.doctors_chat_id is not None
        )
        ok = checks["database"] == "ok"
        degraded = not ok or checks["doctors_alerts"].startswith("failing")
        return JSONResponse(
            {"status": "degraded" if degraded else "ok", **checks},
            status_code=200 if ok else 503,
        )

    return app
