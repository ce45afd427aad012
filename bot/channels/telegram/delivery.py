"""Getting replies to the patient: retries, HTML with a plain fallback, typing, streaming.

Flood control (Telegram's 429 with `retry_after`) is python-telegram-bot's AIORateLimiter on
the bot (bot.channels.telegram.app); here network errors are retried with backoff. A request
that still fails leaves its update to the inbox's retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
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


class StreamedReply:
    """A reply that grows as the LLM streams: one message, edited at a bounded rate.

    The draft is plain text and may be replaced by the final reply (the groundedness check
    can swap a draft for quoted guidelines), so `finish` always rewrites it.
    """

    def __init__(self, sender: Sender, interval_s: float = 1.0, limit: int = 3500) -> None:
        self.sender, self.interval_s, self.limit = sender, interval_s, limit
        self.message: Message | None = None
        self._draft = ""
        self._shown = ""
        # The first draft appears only when the answer takes longer than one interval: a
        # quick answer arrives as one message, a slow one is seen growing.
        self._last_edit = time.monotonic()

    async def on_delta(self, piece: str) -> None:
        """Add streamed text; edit the message when the interval has passed."""
        self._draft += piece
        now = time.monotonic()
        if now - self._last_edit < self.interval_s or len(self._draft) > self.limit:
            return
        self._last_edit = now
        text = self._draft.strip() + " …"
        try:
            if self.message is None:
                self.message = (await self.sender.send(text))[0]
            elif text != self._shown:
                await self.sender.edit(self.message, text)
            self._shown = text
        except Exception as exc:  # a draft that fails to show is not worth failing the reply
            logger.warning("streaming edit failed: %s", type(exc).__name__)

    async def finish(self, text: str, markup: InlineKeyboardMarkup | None = None) -> list[int]:
        """Show the final reply: edit the draft into its first part, send the rest.

        Returns the Telegram ids of the messages that now show the reply.
        """
        parts = split_message(text)
        if self.message is None or not parts:
            return [m.message_id for m in await self.sender.send(text, markup)]
        await self.sender.edit(self.message, parts[0], markup if len(parts) == 1 else None)
        shown = [self.message.message_id]
        for i, part in enumerate(parts[1:], start=1):
            last = i == len(parts) - 1
            sent = await self.sender.send_part(part, markup if last else None, first=False)
            shown.append(sent.message_id)
        return shown
