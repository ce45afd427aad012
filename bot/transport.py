"""Which connections to other hosts would travel unencrypted, said once, in one place.

Patients' words go to the database, Redis and the LLM server; guideline passages come from
Chroma; updates come from the Bot API. On one machine (loopback, a Unix socket) plain
connections are fine. To another host each should use TLS: `sslmode=require` (or
verify-full) in a PostgreSQL URL, `rediss://` for Redis, `https://` for the LLM server,
Chroma and a self-hosted Bot API. Certificates are checked against the system's store or
the file named by `SSL_CERT_FILE` (which httpx, redis-py and libpq each honour).
CareBot names every such connection in a warning at start-up and in `carebot check`; with
CAREBOT_REQUIRE_TLS=true it refuses to start instead.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from bot.config import Settings, is_loopback_url

SECURE_SSLMODES = {"require", "verify-ca", "verify-full"}


def unencrypted(settings: Settings) -> list[str]:
    """One line per connection to another host that would not use TLS (no secrets shown)."""
    found = []
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        if url.startswith("postgresql") and not is_loopback_url(url):
            modes = parse_qs(urlsplit(url).query).get("sslmode", [])
            if not SECURE_SSLMODES.intersection(modes):
                found.append("database (PostgreSQL): add sslmode=require or verify-full")
    if settings.redis_url is not None:
        url = settings.redis_url.get_secret_value()
        if url.startswith("redis://") and not is_loopback_url(url):
            found.append("Redis: use rediss:// (TLS)")
    services: list[tuple[str, str | None]] = [
        ("LLM server", settings.llm_base_url if settings.llm_backend == "openai" else None),
        ("Chroma", settings.chroma_url),
        ("Bot API server", settings.telegram_api_base_url),
    ]
    for name, endpoint in services:
        if endpoint and endpoint.startswith("http://") and not is_loopback_url(endpoint):
            found.append(f"{name}: use https://")
    return found
