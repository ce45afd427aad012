"""Telegram by webhook, as a route of CareBot's own web app (`carebot serve`, any number of
workers behind one URL).

python-telegram-bot's `customwebhookbot/starlettebot.py` pattern, with `updater(None)`: the
web framework receives the POST and the Application only sends. One difference, on purpose:
the update is written to the inbox *before* Telegram hears 200 (the example puts it on an
in-memory queue and answers at once), so a worker killed a moment later loses nothing:
Telegram delivers again whatever was not confirmed, and the inbox recognises what was.
"""

from __future__ import annotations

import hmac
import json
import logging
from urllib.parse import urlparse

from fastapi import FastAPI, Request, Response
from telegram import Bot, Update

from bot.channels.telegram.channel import TelegramChannel
from bot.config import Settings

logger = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # pragma: allowlist secret (a header name)


class TelegramWebhook:
    """Check, read and keep one update Telegram posted; the HTTP status to answer."""

    def __init__(self, channel: TelegramChannel, bot: Bot, secret: str) -> None:
        self.channel, self.bot, self._secret = channel, bot, secret.encode()

    async def handle(self, body: bytes, secret: str | None) -> int:
        """403 without the secret Telegram was given; 200 once the update is kept (or is
        one that cannot be read: Telegram would only send it again); 500 when it could not
        be taken in, so Telegram sends it again."""
        if secret is None or not hmac.compare_digest(secret.encode(), self._secret):
            return 403
        try:
            update = Update.de_json(json.loads(body), self.bot)
        except Exception:  # never log the body: it is patient text
            logger.warning("telegram webhook: an update that cannot be read was dropped")
            return 200
        if update is None:
            return 200
        try:
            await self.channel.accept(update, self.bot)
        except Exception as exc:
            logger.error(
                "telegram webhook: update %s not taken in (%s); Telegram will send it again",
                update.update_id,
                type(exc).__name__,
            )
            return 500
        return 200


def add_webhook_route(app: FastAPI, settings: Settings) -> None:
    """POST at the path of CAREBOT_TELEGRAM_WEBHOOK_URL; answered 503 until Telegram runs."""
    assert settings.telegram_webhook_url is not None
    path = urlparse(settings.telegram_webhook_url).path or "/"

    @app.post(path, include_in_schema=False)
    async def telegram_update(request: Request) -> Response:
        hook = request.app.state.runtime.telegram_webhook
        if hook is None:
            return Response(status_code=503)
        status = await hook(await request.body(), request.headers.get(SECRET_HEADER))
        return Response(status_code=status)
