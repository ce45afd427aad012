"""Getting replies to the patient: retries, HTML with a plain fallback, typing, streaming.

Flood control (Telegram's 429 with `retry_after`) is python-telegram-bot's AIORateLimiter on
the bot (bot.channels.telegram.app); here network errors are retried with backoff. A request
that still fails leaves its update to the inbox's retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from telegram import Bot, InlineKeyboardMarkup, Message
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter

from bot.channels.telegram.formatting import split_message, to_html

logger = logging.getLogger(__name__)
T = TypeVar("T")


class DeliveryFailed(Exception):
    """The reply could not be delivered after every retry."""


async def with_retries(
    call: Callable[[], Awaitable[T]], attempts: int = 6, base_delay_s: float = 0.5
) -> T:
    """Run a Bot API call, retrying network errors with backoff."""
    for attempt in range(attempts):
        try:
            return await call()
        except (BadRequest, Forbidden, RetryAfter):
            raise  # the request is wrong, the patient blocked the bot, or flood control gave up
        except NetworkError as exc:
            if attempt == attempts - 1:
                raise DeliveryFailed(type(exc).__name__) from exc
            logger.warning("telegram network error %s; retrying", type(exc).__name__)
            await asyncio.sleep(min(base_delay_s * 2**attempt, 8.0))
    raise DeliveryFailed("too many retries")


def _is_parse_error(exc: BadRequest) -> bool:
    return "parse entities" in exc.message.lower()


class Sender:
    """Send and edit messages in one chat, as HTML, split under Telegram's length limit."""

    def __init__(self, bot: Bot, chat_id: int, reply_to: int | None = None) -> None:
        self.bot, self.chat_id, self.reply_to = bot, chat_id, reply_to

    async def send(self, text: str, markup: InlineKeyboardMarkup | None = None) -> list[Message]:
        """Send `text` in as many messages as it needs; buttons go on the last one."""
        parts = split_message(text)
        sent = []
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            sent.append(await self.send_part(part, markup if last else None, first=i == 0))
        return sent

    async def send_part(
        self, part: str, markup: InlineKeyboardMarkup | None, first: bool
    ) -> Message:
        kwargs: dict[str, Any] = {"chat_id": self.chat_id, "reply_markup": markup}
        if first and self.reply_to is not None:
            kwargs["reply_to_message_id"] = self.reply_to
            kwargs["allow_sending_without_reply"] = True
        try:
            return await with_retries(
                lambda: self.bot.send_message(
                    text=to_html(part), parse_mode=ParseMode.HTML, **kwargs
                )
            )
        except BadRequest as exc:
            if not _is_parse_error(exc):
                raise
            logger.warning("telegram refused the HTML; sending plain text")
            return await with_retries(lambda: self.bot.send_message(text=part, **kwargs))

    async def edit(
        self, message: Message, text: str, markup: InlineKeyboardMarkup | None = None
    ) -> None:
        """Replace a message's text (it must fit in one message)."""
        await self.edit_id(message.message_id, text, markup)

    async def edit_id(
        self, message_id: int, text: str, markup: InlineKeyboardMarkup | None = None
    ) -> None:
        """Replace the text of the message with this id."""
        try:
            await with_retries(
                lambda: self.bot.edit_message_text(
                    chat_id=self.chat_id,
                    message_id=message_id,
                    text=to_html(text),
                    parse_mode=ParseMode.HTML,
                    reply_markup=markup,
                )
            )
        except BadRequest as exc:
            if "not modified" in exc.message.lower():
                return
            if not _is_parse_error(exc):
                raise
            await with_retries(
                lambda: self.bot.edit_message_text(
                    chat_id=self.chat_id,
                    message_id=message_id,
                    text=text,
                    reply_markup=markup,
                )
            )

    @contextlib.asynccontextmanager
    async def typing(self, every_s: float = 4.5) -> AsyncIterator[None]:
        """Show "typing..." until the block ends (Telegram shows it for about 5 seconds)."""

        async def keep_typing() -> None:
            while True:
                with contextlib.suppress(Exception):  # a lost indicator is harmless
                    await self.bot.send_chat_action(self.chat_id, ChatAction.TYPING)
                await asyncio.sleep(every_s)

        task = asyncio.create_task(keep_typing())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
