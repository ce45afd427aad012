"""A minimal Telegram adapter (long polling); the full channel comes with the Telegram issue."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters

from bot.models import IncomingMessage
from bot.runtime import Runtime

logger = logging.getLogger(__name__)
TEXT_ONLY = "For now I can only read text messages. Please type your question."


def to_incoming(update: Update) -> IncomingMessage | None:
    """Turn a private-chat message update into an IncomingMessage."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None or message.chat.type != "private":
        return None
    text = message.text or ""
    if text.startswith("/start"):
        text = ""  # the engine answers an empty first message with the consent text
    return IncomingMessage(
        channel="telegram",
        chat_id=str(message.chat_id),
        user_id=str(user.id),
        message_id=str(message.message_id),
        text=text,
        language=user.language_code,
    )


async def _on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    msg = to_incoming(update)
    if msg is None or update.effective_message is None:
        return
    runtime: Runtime = context.application.bot_data["runtime"]
    reply = await runtime.engine.handle(msg)
    await update.effective_message.reply_text(reply.text)


async def _on_other(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if update.effective_message is not None and update.effective_message.chat.type == "private":
        await update.effective_message.reply_text(TEXT_ONLY)


async def _on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    logger.error("telegram handler failed: %s", type(context.error).__name__)


async def start_telegram(runtime: Runtime) -> Application:  # type: ignore[type-arg]
    """Start polling Telegram in the running event loop; stopped when the runtime closes."""
    settings = runtime.settings
    builder = Application.builder().token(settings.telegram_bot_token or "")
    if settings.telegram_api_base_url:
        base = settings.telegram_api_base_url.rstrip("/")
        builder = builder.base_url(f"{base}/bot").base_file_url(f"{base}/file/bot")
    application = builder.build()
    application.bot_data["runtime"] = runtime
    application.add_handler(MessageHandler(filters.TEXT, _on_text))
    application.add_handler(MessageHandler(~filters.TEXT, _on_other))
    application.add_error_handler(_on_error)
    await application.initialize()
    await application.start()
    assert application.updater is not None
    await application.updater.start_polling()

    async def stop() -> None:
        assert application.updater is not None
        await application.updater.stop()
        await application.stop()
        await application.shutdown()

    runtime.on_close.append(stop)
    return application
