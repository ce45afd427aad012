"""Mount the dashboard on the web app: routes, static files, refusals as pages."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from bot.dashboard.account_routes import router as account_router
from bot.dashboard.approval_routes import router as approval_router
from bot.dashboard.guards import Denied
from bot.dashboard.pages import STATIC, Pages
from bot.dashboard.prompt_routes import router as prompt_router
from bot.dashboard.routes import router
from bot.dashboard.security_routes import router as security_router
from bot.dashboard.telegram_routes import router as telegram_router

HEADINGS = {401: "Please sign in", 403: "Not allowed", 404: "Not found"}


async def _denied(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Denied)
    if exc.to_login:
        return RedirectResponse(f"/dashboard/login?next={quote(request.url.path)}", 303)
    if exc.to:
        return RedirectResponse(exc.to, 303)
    pages: Pages = request.app.state.dashboard_pages
    return pages.render(
        "error.html",
        status=exc.status,
        page="error",
        events=None,
        who=exc.who,
        title=HEADINGS.get(exc.status, "Refused"),
        heading=HEADINGS.get(exc.status, "Refused"),
        message=exc.message,
    )


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard under /dashboard on `app`."""
    app.state.dashboard_pages = Pages()
    app.include_router(router)
    app.include_router(prompt_router)
    app.include_router(approval_router)
    app.include_router(telegram_router)
    app.include_router(account_router)
    app.include_router(security_router)
    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")
    app.add_exception_handler(Denied, _denied)
