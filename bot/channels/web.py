"""The web app: the patient's chat page at /, its API under /api (bot.channels.web_chat),
/healthz, and the doctors' dashboard under /dashboard (bot.dashboard).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from bot import metrics
from bot.channels.security_headers import SecurityHeaders
from bot.channels.web_chat import CHANNEL, BodyLimit, WebPatients, chat_routes, remember_chat
from bot.dashboard.app import mount_dashboard
from bot.errors import MemoryUnavailable, StorageUnavailable
from bot.runtime import Runtime
from bot.workers import RETRIEVAL
from rag.errors import IndexUnavailable

logger = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("static") / "chat.html"


def create_web_app(start: Callable[[], Awaitable[Runtime]]) -> FastAPI:
    """Build the FastAPI app; `start` builds the runtime inside the app's lifespan."""
    patients = WebPatients()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await start()
        app.state.runtime = runtime
        metrics.worker_started()
        # A web patient's page may hold its stream to another worker: sent there too.
        runtime.cases.patients.register(CHANNEL, runtime.cluster.shared("web", patients.send))
        try:
            yield
        finally:
            await runtime.aclose()

    app = FastAPI(title="CareBot", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=PAGE.parent), name="chat-static")
    mount_dashboard(app)
    app.include_router(chat_routes(lambda request: request.app.state.runtime, patients))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        return JSONResponse({"error": f"the message could not be read ({problems})"}, 422)

    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request) -> HTMLResponse:
        # The chat cookie is set with the page, so its event stream is the chat's from the start.
        response = HTMLResponse(PAGE.read_text(encoding="utf-8"))
        remember_chat(response, request)
        return response

    @app.get("/metrics", include_in_schema=False)
    async def metrics_page(request: Request) -> Response:
        # Counts and timings only, never patient data; still not for the open internet:
        # with CAREBOT_METRICS_TOKEN set, a scraper must send it as a bearer token.
        token = request.app.state.runtime.settings.metrics_token
        if token is not None:
            sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(sent.encode(), token.get_secret_value().encode()):
                return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/healthz")
    async def health(request: Request) -> JSONResponse:
        runtime: Runtime = request.app.state.runtime
        checks = {"database": "ok", "memory": "ok", "llm": runtime.llm.name, "guidelines": "ok"}
        # The embedded model's process: ready, restarting after a crash, or unusable (then
        # answers quote the guidelines). A server behind the openai backend is not probed.
        checks["llm_status"] = runtime.llm.status()
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
        # Serving, but something a patient or doctor would notice is missing: say so.
        degraded = (
            not ok
            or checks["guidelines"] != "ok"
            or checks["memory"] != "ok"
            or checks["llm_status"].startswith(("restarting", "unavailable"))
            or checks["doctors_alerts"].startswith("failing")
        )
        return JSONResponse(
            {"status": "degraded" if degraded else "ok", **checks},
            status_code=200 if ok else 503,
        )

    return app
