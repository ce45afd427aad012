"""Build and run the python-telegram-bot Application: long polling or a webhook.

`TELEGRAM_API_BASE_URL` points the bot at a self-hosted Bot API server (and the tests at
theirs); `TELEGRAM_WEBHOOK_URL` switches from polling to a webhook: a route of the web app
(bot/channels/telegram/webhook.py) whose requests must carry the secret token, so any number
of `carebot serve` workers can receive the bot's updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlparse

from telegram import BotCommand, Update
from telegram.ext import AIORateLimiter, Application, ContextTypes, ExtBot, TypeHandler
from telegram.request import HTTPXRequest

from bot.channels.telegram.channel import TelegramChannel
from bot.channels.telegram.delivery import Sender, with_retries
from bot.channels.telegram.doctors import DoctorsDesk
from bot.channels.telegram.requests import TolerantUpdatesRequest
from bot.channels.telegram.webhook import TelegramWebhook
from bot.config import Settings
from bot.dashboard.security_alerts import SecurityAlerts
from bot.dashboard.telegram_link import TelegramLinks
from bot.errors import ConfigError
from bot.leader import Leadership
from bot.runtime import Runtime
from bot.storage.inbox import RetryPolicy, UpdateInbox

logger = logging.getLogger(__name__)
# The updates CareBot acts on; Telegram sends nothing else.
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]
COMMANDS = {
    "en": [
        ("start", "What CareBot is, and consent"),
        ("help", "How to use CareBot"),
        ("doctor", "Ask for a doctor"),
        ("language", "Choose English or Chinese"),
        ("privacy", "What is stored and for how long"),
        ("mydata", "A copy of everything stored about me"),
        ("forget", "Delete everything stored about me"),
    ],
    "zh": [
        ("start", "CareBot 简介与同意"),
        ("help", "如何使用 CareBot"),
        ("doctor", "请医生查看"),
        ("language", "选择英文或中文"),
        ("privacy", "保存哪些内容、保存多久"),
        ("mydata", "获取关于我的所有数据副本"),
        ("forget", "删除关于我的所有内容"),
    ],
}


class _PatientTextFilter(logging.Filter):
    """python-telegram-bot logs the raw data of an update it cannot parse: keep it out."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "data" in str(record.msg).lower() and record.args:
            record.args = tuple("<update withheld>" for _ in record.args)
        return True


for _name in ("telegram.Bot", "telegram.ext.ExtBot"):
    logging.getLogger(_name).addFilter(_PatientTextFilter())


class FloodControl(AIORateLimiter):
    """PTB's AIORateLimiter for what Telegram counts as messages; "typing..." goes straight out.

    A chat action is a hint, not a message: counted, a burst's typing indicators would halve
    the messages per second left for replies.
    """

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Any]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Any:
        if endpoint == "sendChatAction":
            return await callback(*args, **kwargs)
        return await super().process_request(
            callback, args, kwargs, endpoint, data, rate_limit_args
        )


def build_application(settings: Settings) -> Application:  # type: ignore[type-arg]
    """Return the Application (not started) for the configured token and API server.

    Flood control is PTB's own AIORateLimiter (Telegram's limits per second overall and per
    minute in the doctors' group; a 429 is waited out and retried); getUpdates goes through
    TolerantUpdatesRequest; replies to many chats at once share a pool of connections.
    """
    base = (settings.telegram_api_base_url or "https://api.telegram.org").rstrip("/")
    bot = ExtBot(
        token=settings.telegram_bot_token.get_secret_value() if settings.telegram_bot_token else "",
        base_url=f"{base}/bot",
        base_file_url=f"{base}/file/bot",
        request=HTTPXRequest(connection_pool_size=64),
        get_updates_request=TolerantUpdatesRequest(connection_pool_size=1, read_timeout=15),
        rate_limiter=FloodControl(
            group_max_rate=settings.telegram_group_messages_per_minute, max_retries=3
        ),
    )
    builder = Application.builder().bot(bot)
    if settings.telegram_webhook_url:
        builder = builder.updater(None)  # the web app's route receives (webhook.py)
    return builder.build()


async def _on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    # One global handler; the update itself (patient text) never reaches the log.
    update_id = update.update_id if isinstance(update, Update) else None
    logger.error("telegram update %s failed: %s", update_id, type(context.error).__name__)


async def register_commands(application: Application) -> None:  # type: ignore[type-arg]
    """Publish the command menu in each supported language (English is the default)."""
    for language, commands in COMMANDS.items():
        await application.bot.set_my_commands(
            [BotCommand(name, about) for name, about in commands],
            language_code=None if language == "en" else language,
        )


async def start_telegram(runtime: Runtime) -> Application:  # type: ignore[type-arg]
    """Start the Telegram channel in the running event loop; stopped when the runtime closes."""
    settings = runtime.settings
    poller = Leadership("telegram-polling", runtime.storage.engine, settings.data_dir)
    # Two pollers of one bot take each other's updates (Telegram answers one of them 409
    # Conflict): a second CareBot on the same database refuses to poll.
    if not settings.telegram_webhook_url and not await asyncio.to_thread(poller.try_acquire):
        raise ConfigError(
            "another CareBot process is polling this bot's updates (same database); stop "
            "it, or run every process behind a webhook (CAREBOT_TELEGRAM_WEBHOOK_URL)"
        )
    application = build_application(settings)
    desk = DoctorsDesk(application.bot, runtime.cases, settings, TelegramLinks(runtime.storage))
    runtime.cases.announce_with(desk.on_event)

    async def to_patient(chat_id: str, text: str) -> None:
        await Sender(application.bot, int(chat_id)).send(text)

    runtime.cases.patients.register("telegram", to_patient)
    policy = RetryPolicy(
        attempts=settings.telegram_retry_attempts, first_delay_s=settings.telegram_retry_first_s
    )
    channel = TelegramChannel(
        runtime.engine,
        UpdateInbox(runtime.storage, "telegram", policy),
        settings,
        desk,
        runtime.limits,
    )
    application.bot_data["channel"] = channel

    async def receive(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await channel.receive(update, context.bot)

    application.add_handler(TypeHandler(Update, receive))
    application.add_error_handler(_on_error)
    await application.initialize()
    try:
        await register_commands(application)
    except Exception as exc:  # the menu is a convenience; the bot works without it
        logger.warning("could not register the command menu: %s", type(exc).__name__)
    await application.start()
    replayed = await channel.replay(application.bot)
    if replayed:
        logger.info("replaying %d telegram updates not finished before the restart", replayed)
    sweeps = asyncio.create_task(channel.run_sweeps(application.bot), name="telegram-sweeps")
    alerts = SecurityAlerts(runtime.storage, settings.dashboard_url)

    async def to_admin(chat_id: int, text: str) -> None:
        await Sender(application.bot, chat_id).send(text)

    alerts_stop = asyncio.Event()
    admin_alerts = asyncio.create_task(
        alerts.run(to_admin, settings.admin_alerts_s, alerts_stop, runtime.leading),
        name="admin-security-alerts",
    )
    if settings.telegram_webhook_url:
        assert settings.telegram_webhook_secret is not None  # required with a webhook URL
        secret = settings.telegram_webhook_secret.get_secret_value()
        # Every worker registers the same URL and secret: the same call, answered the same.
        await with_retries(
            lambda: application.bot.set_webhook(
                url=settings.telegram_webhook_url or "",
                secret_token=secret,
                allowed_updates=ALLOWED_UPDATES,
            )
        )
        runtime.telegram_webhook = TelegramWebhook(channel, application.bot, secret).handle
        logger.info("telegram: webhook at the web app's %s", _path(settings.telegram_webhook_url))
    else:
        assert application.updater is not None
        await application.updater.start_polling(allowed_updates=ALLOWED_UPDATES, timeout=10)
        logger.info("telegram: long polling")

    async def stop() -> None:
        runtime.telegram_webhook = None  # from now on Telegram hears 503 and sends again
        alerts_stop.set()  # the push under way finishes (a send and its cursor go together)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(admin_alerts), 10)
        for task in (sweeps, admin_alerts):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if application.updater is not None:
            await application.updater.stop()
        # Finish what is under way (a reply cut off now would be sent again after the
        # restart); what is left after the grace period is replayed from the inbox.
        if not await channel.queues.join(timeout_s=10):
            logger.warning(
                "telegram: stopping with %d updates unfinished", channel.queues.pending()
            )
            await channel.queues.cancel()
        await application.stop()
        await application.shutdown()
        poller.release()

    runtime.on_close.append(stop)
    return application


def _path(url: str) -> str:
    return urlparse(url).path or "/"
