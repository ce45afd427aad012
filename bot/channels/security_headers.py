"""Security headers on every response of the web app: the patient chat, its API and the
dashboard (whose pages set a stricter policy of their own, which is kept).

The chat page loads its script and style from /static only, so injected markup in a message
(text is always set as text, never as HTML) could not run even if it slipped through; no
site may frame it (clickjacking a consent button); nothing is cached (patients' words); and
behind HTTPS browsers are told to use nothing else for a year.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
HEADERS = {
    "content-security-policy": POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
HSTS = "max-age=31536000; includeSubDomains"
CACHEABLE = ("/static/", "/dashboard/static/")  # scripts and styles, no patient data


class SecurityHeaders:
    """ASGI middleware adding HEADERS (unless the response set its own), no-store outside
    static files, and HSTS on requests that came over HTTPS (as uvicorn's proxy headers
    report them)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = dict(HEADERS)
        if not str(scope.get("path", "")).startswith(CACHEABLE):
            extra["cache-control"] = "no-store"
        if scope.get("scheme") == "https":
            extra["strict-transport-security"] = HSTS

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                headers += [
                    (name.encode(), value.encode())
                    for name, value in extra.items()
                    if name.encode() not in present
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
