"""Telegram updates to engine calls: thin handlers, kept once in the inbox, ordered per chat.

Receiving is sequential (the order Telegram gave) and never waits for the database: each
update is queued on its chat, whose queue writes it to the inbox, calls the engine, delivers
the reply, records that it arrived, then marks the update done. An update that fails is
retried by a sweep with growing pauses (and replayed after a restart), then given up; a
redelivered update is recognised by its id and skipped, and a reply recorded as delivered is
never sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telegram import (
    Bot,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    Update,
)
from telegram.error import BadRequest, Forbidden

from bot.channels.telegram.delivery import Sender, with_retries
from bot.channels.telegram.doctors import DoctorsDesk
from bot.chat_queues import ChatQueues
from bot.config import Settings
from bot.early_warning import EarlyWarning
from bot.engine import ConversationEngine
from bot.errors import StorageUnavailable
from bot.models import IncomingMessage, Reply, TriageLevel
from bot.rate_limit import RateLimits
from bot.replies import detect_language
from bot.storage.inbox import UpdateInbox

logger = logging.getLogger(__name__)
CHANNEL = "telegram"
# Behind a webhook: how long a worker holds a chat without renewing (it renews every third of
# this while it works; a worker that dies lets its chats go after at most this long).
CHAT_LEASE_S = 15.0
STALE_RECEIVED_S = 600.0  # forget an update received here but handled by another worker
THROTTLE_KEY = "carebot_throttle"  # kept in an update's payload beside Telegram's fields
# Message fields Telegram may carry instead of text -> the patient text explaining it.
NON_TEXT = (
    ("voice", "unsupported_voice"),
    ("audio", "unsupported_voice"),
    ("video_note", "unsupported_image"),
    ("video", "unsupported_image"),
    ("animation", "unsupported_image"),
    ("photo", "unsupported_image"),
    ("document", "unsupported_document"),
    ("sticker", "unsupported_sticker"),
    ("dice", "unsupported_sticker"),
    ("venue", "unsupported_location"),
    ("location", "unsupported_location"),
    ("contact", "unsupported_contact"),
    ("poll", "unsupported_poll"),
)
BUTTONS = {
    "en": {"yes": "Yes, I agree", "no": "No", "delete": "Delete everything", "keep": "Keep it"},
    "zh": {"yes": "同意", "no": "不同意", "delete": "全部删除", "keep": "保留"},
}
LANGUAGE_BUTTONS = (("en", "English"), ("zh", "中文"))


def _buttons(*rows: tuple[tuple[str, str], ...]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=data) for label, data in row] for row in rows]
    )


def consent_buttons(language: str) -> InlineKeyboardMarkup:
    """Inline Yes / No for the consent question."""
    words = BUTTONS.get(language, BUTTONS["en"])
    return _buttons(((words["yes"], "consent:yes"), (words["no"], "consent:no")))


def non_text_kind(message: Message) -> tuple[str, str]:
    """Return the kind of a message without text and the notice that answers it."""
    for field, notice in NON_TEXT:
        if getattr(message, field, None):
            return field, notice
    return "other", "unsupported_other"


def command_of(text: str) -> tuple[str, str] | None:
    """Split "/cmd@bot args" into ("cmd", "args"); None when the text is not a command."""
    if not text.startswith("/"):
        return None
    head, _, args = text[1:].partition(" ")
    name = head.split("@", 1)[0].lower()
    return (name, args.strip()) if name.isascii() and name.replace("_", "").isalnum() else None


@dataclass
class _Hold:
    """A worker's hold on one chat while it handles the chat's kept updates."""

    holder: str
    lost: bool = False


class TelegramChannel:
    """Everything CareBot does with Telegram updates, over the one engine."""

    def __init__(
        self,
        engine: ConversationEngine,
        inbox: UpdateInbox,
        settings: Settings,
        desk: DoctorsDesk | None = None,
        limits: RateLimits | None = None,
    ) -> None:
        self.engine, self.inbox, self.settings, self.desk = engine, inbox, settings, desk
        self.queues = ChatQueues(name="telegram")
        # Behind a webhook, several workers receive this bot's updates: a chat's updates are
        # then handled from the inbox by whichever worker holds the chat's lease (below).
        self.shared = settings.telegram_webhook_url is not None
        self.worker = f"{socket.gethostname()[:40]}:{os.getpid()}"
        # Kept updates received here, awaiting their turn: (throttle, early warning, when).
        self._received: dict[int, tuple[str, EarlyWarning | None, float]] = {}
        self._under_way: set[int] = set()  # update ids queued or being handled here
        self._tasks: set[asyncio.Task[None]] = set()
        self.limit = (limits or RateLimits()).window(
            "telegram-chat",
            settings.telegram_rate_limit_messages,
            settings.telegram_rate_limit_window_s,
        )
        self.commands = {
            "start": self._start,
            "help": self._help,
            "privacy": self._privacy,
            "language": self._language,
            "doctor": self._doctor,
            "forget": self._forget,
            "mydata": self._my_data,
        }

    # --- receiving (sequential, in Telegram's order) ---------------------------------------

    async def receive(self, update: Update, bot: Bot) -> None:
        """Queue the update on its chat, where it is kept in the inbox and then handled.

        Nothing here waits for the database: PTB hands updates over one at a time, so a slow
        write here would hold every chat. (The flood limit may ask Redis: one short timeout
        at most, then it counts in memory for a while.) A patient's text gets an early
        warning first (an emergency is answered from the rules if its turn is slow to start).
        """
        chat = update.effective_chat
        doctors = chat is not None and chat.id == self.settings.doctors_chat_id
        if chat is None or (chat.type != "private" and not doctors):
            return  # other groups are ignored
        if update.update_id in self._under_way:
            logger.info("update %s is already under way; skipped", update.update_id)
            return
        early = self._early_warning(update, bot)  # first: an emergency waits for nothing
        throttle = await self.limit.check(str(chat.id)) if update.message is not None else "ok"
        self._queue(update, bot, throttle, early, keep=True)

    async def accept(self, update: Update, bot: Bot) -> None:
        """A webhook's update: kept in the inbox before Telegram hears it arrived, then
        handled in its chat's turn by whichever worker holds the chat (`_drain_chat`).

        The early warning starts first: an emergency never waits for the database, the
        chat's turn or another worker.
        """
        chat = update.effective_chat
        doctors = chat is not None and chat.id == self.settings.doctors_chat_id
        if chat is None or (chat.type != "private" and not doctors):
            return
        early = self._early_warning(update, bot)
        throttle = await self.limit.check(str(chat.id)) if update.message is not None else "ok"
        if not await self._keep(update, bot, early, throttle):
            return
        self._received[update.update_id] = (throttle, early, time.monotonic())
        self._drain_soon(str(chat.id), bot)

    def _drain_soon(self, chat: str, bot: Bot) -> None:
        # The chat's queue runs one drain at a time here; a full queue has drains enough.
        self.queues.submit(chat, lambda: self._drain_chat(chat, bot))

    async def _drain_chat(self, chat: str, bot: Bot) -> None:
        """Handle the chat's kept updates in order while holding its lease; let it go, and
        look once more: an update kept while another held the lease is this one's to take."""
        hold = _Hold(f"{self.worker}:{uuid.uuid4().hex[:8]}")
        handled: set[int] = set()  # across rounds: one the database cannot finish waits
        try:
            while await self.inbox.take_chat(chat, hold.holder, CHAT_LEASE_S):
                hold.lost = False
                renewing = asyncio.create_task(self._renew(chat, hold))
                try:
                    stuck = await self._handle_kept(chat, bot, hold, handled)
                finally:
                    renewing.cancel()
                    await self.inbox.free_chat(chat, hold.holder)
                if stuck or hold.lost or await self.inbox.next_of_chat(chat) is None:
                    return  # the sweep (or the worker that took the chat) goes on
        except StorageUnavailable as exc:  # kept: the sweep comes back to the chat
            logger.warning("telegram chat drain stopped: %s", exc)

    async def _handle_kept(self, chat: str, bot: Bot, hold: _Hold, handled: set[int]) -> bool:
        """Handle the chat's due updates oldest first while the lease holds; True when one
        came back unfinished (the database took the reply but not the "done")."""
        while not hold.lost and (kept := await self.inbox.next_of_chat(chat)) is not None:
            update_id, payload = kept
            if update_id in handled:
                return True
            handled.add(update_id)
            # Received here: its early warning is ours to settle. Elsewhere: its throttle
            # came with it (and its early warning fires there if this turn is slow).
            kept_throttle = str(payload.get(THROTTLE_KEY, "ok"))
            throttle, early, _ = self._received.pop(update_id, (kept_throttle, None, 0.0))
            try:
                update = Update.de_json(payload, bot)
            except Exception:  # a payload this version cannot read: give it up, not crash
                update = None
            if update is None or update.effective_chat is None:
                await self._settle(update_id, "failed")
                continue
            await self.process(update, bot, throttle, early)
        return False

    async def _renew(self, chat: str, hold: _Hold) -> None:
        """Renew the lease every third of its length. Taken by another worker (this one was
        too slow to renew), or not renewed for two thirds of it: stop before the next
        update, so two workers never handle one chat's updates at once for long."""
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(CHAT_LEASE_S / 3)
            try:
                if not await self.inbox.take_chat(chat, hold.holder, CHAT_LEASE_S):
                    hold.lost = True
                    return
                renewed = time.monotonic()
            except StorageUnavailable:
                if time.monotonic() - renewed > CHAT_LEASE_S * 2 / 3:
                    hold.lost = True
                    return

    def _early_warning(self, update: Update, bot: Bot) -> EarlyWarning | None:
        message = update.message
        if message is None or message.chat.type != "private" or not message.text:
            return None
        if message.text.startswith("/"):
            return None  # a command
        sender = Sender(bot, message.chat_id, reply_to=message.message_id)

        async def send(reply: Reply) -> None:
            await sender.send(reply.text)

        msg = self._incoming(message, message.text)
        return self.engine.early_warning(msg, send, self.settings.early_warning_s)

    async def _keep(
        self, update: Update, bot: Bot, early: EarlyWarning | None, throttle: str | None = None
    ) -> bool:
        """Write the update to the inbox; False when it needs no handling here. `throttle`:
        the flood limit's word on it, kept with it for whichever worker handles it."""
        assert update.effective_chat is not None
        payload = update.to_dict()
        if throttle is not None:
            payload[THROTTLE_KEY] = throttle  # PTB reads an unknown key into api_kwargs
        try:
            added = await self.inbox.add(update.update_id, str(update.effective_chat.id), payload)
        except StorageUnavailable:
            # Telegram has already moved past this update: answer it now from the rules, or
            # it is lost without a word (an emergency still gets its instruction). Behind a
            # webhook, not inside the request: a slow answer would have Telegram send the
            # update again, and the patient get the answer twice.
            answer = self._answer_unsaved(update, bot, early)
            if self.shared:
                self._background(answer)
            else:
                await answer
            return False
        if not added:
            logger.info("update %s seen before; skipped", update.update_id)
            if early is not None:
                await early.settle()
        return added

    async def replay(self, bot: Bot) -> int:
        """Queue the updates a previous run kept but did not finish; return how many."""
        if self.shared:
            return self._drain_chats(await self.inbox.due_chats(), bot)
        return self._requeue(await self.inbox.unfinished(), bot)

    async def sweep(self, bot: Bot, now: datetime | None = None) -> int:
        """Queue kept updates that are due for another try (and not under way); how many
        (behind a webhook: how many chats, each drained under its lease)."""
        quiet_s = self.settings.telegram_retry_first_s
        if self.shared:
            return self._drain_chats(await self.inbox.due_chats(now, quiet_s), bot)
        return self._requeue(await self.inbox.due(now, quiet_s=quiet_s), bot)

    def _drain_chats(self, chats: list[str], bot: Bot) -> int:
        # What this worker kept about updates that another worker handled (a lease) is old.
        stale = time.monotonic() - STALE_RECEIVED_S
        for update_id, (_, _, at) in list(self._received.items()):
            if at < stale:
                del self._received[update_id]
        for chat in chats:
            self._drain_soon(chat, bot)
        return len(chats)

    async def run_sweeps(self, bot: Bot) -> None:
        """Retry unfinished updates while the process runs, until cancelled."""
        while True:
            await asyncio.sleep(self.settings.telegram_retry_first_s)
            try:
                swept = await self.sweep(bot)
            except StorageUnavailable as exc:
                logger.warning("telegram inbox sweep skipped: %s", exc)
                continue
            if swept:
                logger.info("telegram: retrying %d unfinished updates", swept)

    def _requeue(self, pending: list[tuple[int, dict[str, Any]]], bot: Bot) -> int:
        queued = 0
        for update_id, payload in pending:
            if update_id in self._under_way:
                continue
            try:
                update = Update.de_json(payload, bot)
            except Exception:  # a payload this version cannot read: give it up, not crash
                update = None
            if update is None or update.effective_chat is None:
                self._background(self.inbox.finish(update_id, "failed"))
                continue
            self._queue(update, bot, "ok")
            queued += 1
        return queued

    def _queue(
        self,
        update: Update,
        bot: Bot,
        throttle: str,
        early: EarlyWarning | None = None,
        keep: bool = False,
    ) -> None:
        """Queue the update on its chat; `keep`: write it to the inbox first (a new update)."""
        assert update.effective_chat is not None
        self._under_way.add(update.update_id)

        async def job() -> None:
            try:
                if keep and not await self._keep(update, bot, early):
                    return
                await self.process(update, bot, throttle, early)
            finally:
                self._under_way.discard(update.update_id)

        if not self.queues.submit(str(update.effective_chat.id), job):
            # The chat's queue is full (a flood): the update waits in the inbox for a sweep
            # (an early warning still fires for an emergency in it).
            self._under_way.discard(update.update_id)
            if keep:
                self._background(self._keep_for_later(update))

    async def _keep_for_later(self, update: Update) -> None:
        assert update.effective_chat is not None
        try:
            await self.inbox.add(update.update_id, str(update.effective_chat.id), update.to_dict())
        except StorageUnavailable:
            logger.error(
                "update %s: dropped in a flood while the database failed", update.update_id
            )

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_unsaved(
        self, update: Update, bot: Bot, early: EarlyWarning | None = None
    ) -> None:
        """Answer a private message that could not be stored, from the rules alone."""
        warned = await early.settle() if early is not None else None
        message = update.message
        if message is None or message.chat.type != "private":
            return
        msg = self._incoming(message, message.text or message.caption or "")
        reply = await self.engine.unsaved(msg, warned)
        try:
            sender = Sender(bot, message.chat_id, reply_to=message.message_id)
            await sender.send(reply.unsent())
        except Exception as exc:  # nothing is stored to retry from: log and carry on
            logger.error("update %s: unsaved reply not delivered (%s)", update.update_id, exc)

    # --- processing (per chat, in order) ----------------------------------------------------

    async def process(
        self, update: Update, bot: Bot, throttle: str = "ok", early: EarlyWarning | None = None
    ) -> None:
        """Answer one update and mark it done; a failure is retried later, then given up."""
        try:
            chat = update.effective_chat
            if self.desk is not None and chat is not None and chat.id == self.desk.chat_id:
                if update.callback_query is not None:
                    await self.desk.group_callback(update.callback_query)
                elif update.message is not None:
                    await self.desk.group_message(update.message)
            elif update.callback_query is not None:
                await self._callback(update.callback_query, bot)
            elif update.edited_message is not None:
                await self._edited(update.edited_message, bot)
            elif update.message is not None:
                await self._message(update.message, bot, throttle, early)
        except Forbidden:
            logger.info("update %s: the patient blocked the bot", update.update_id)
            await self._settle(update.update_id, "undeliverable")
            return
        except Exception as exc:
            # Kept as received: the sweep tries it again (the engine returns the stored reply,
            # which is sent only if it never arrived), then gives it up.
            again = await self._retry(update.update_id)
            logger.error(
                "update %s: not handled (%s); %s",
                update.update_id,
                type(exc).__name__,
                "will retry" if again else "given up",
            )
            return
        await self._settle(update.update_id, "done")

    async def _settle(self, update_id: int, status: str) -> None:
        try:
            await self.inbox.finish(update_id, status)
        except StorageUnavailable:  # stays received: the sweep replays it (no reply twice)
            logger.warning("update %s: could not be marked %s", update_id, status)

    async def _retry(self, update_id: int) -> bool:
        try:
            return await self.inbox.failed(update_id)
        except StorageUnavailable:
            return True

    def _incoming(self, message: Message, text: str, **extra: Any) -> IncomingMessage:
        user = message.from_user
        return IncomingMessage(
            channel=CHANNEL,
            chat_id=str(message.chat_id),
            user_id=str(user.id if user else message.chat_id),
            message_id=str(extra.pop("message_id", message.message_id)),
            text=text,
            language=user.language_code if user else None,
            **extra,
        )

    async def _message(
        self, message: Message, bot: Bot, throttle: str, early: EarlyWarning | None = None
    ) -> None:
        sender = Sender(bot, message.chat_id, reply_to=message.message_id)
        text = message.text or ""
        if message.text is None:
            kind, notice = non_text_kind(message)
            msg = self._incoming(message, message.caption or "", attachments=[kind])
            await self._send(sender, await self.engine.acknowledge(msg, notice))
            return
        command = command_of(text)
        if self.desk is not None and command is not None and command[0] == "link":
            # Staff linking their account, not a patient's message; the per-chat limit
            # bounds how fast anyone can guess codes.
            await self.desk.link(message, command[1] if throttle == "ok" else None)
            return
        if self.desk is not None and await self.desk.private_message(message):
            if early is not None:
                await early.settle()
            return  # a doctor talking to their patient
        msg = self._incoming(message, text)
        if throttle != "ok":
            slow_down = "slow_down" if throttle == "notify" else None
            await self._send(sender, await self.engine.acknowledge(msg, slow_down, early=early))
            return
        if command is not None and command[0] in self.commands:
            await self.commands[command[0]](msg, sender)
            return
        # Patients see "typing..." until the answer has passed the groundedness check: a
        # streamed draft would show (and Telegram's notification preview would keep) words
        # that the check may replace, and a draft cut off by a crash stays on their screen.
        async with sender.typing():
            reply = await self.engine.handle(msg, early=early)
        await self._send(sender, reply)

    async def _edited(self, message: Message, bot: Bot) -> None:
        """An edit is answered only when it adds red flags (it is re-triaged then)."""
        stamp = int(message.edit_date.timestamp()) if message.edit_date else 0
        msg = self._incoming(
            message,
            message.text or message.caption or "",
            message_id=f"{message.message_id}-e{stamp}",
        )
        reply = await self.engine.acknowledge(msg, None, retriage_from=TriageLevel.URGENT)
        await self._send(Sender(bot, message.chat_id, reply_to=message.message_id), reply)

    async def _callback(self, query: CallbackQuery, bot: Bot) -> None:
        # Stops the button's spinner; a query too old to answer still gets its action.
        with contextlib.suppress(BadRequest):
            await with_retries(query.answer)
        message = query.message
        if not isinstance(message, Message) or message.chat.type != "private":
            return
        action, _, value = (query.data or "").partition(":")
        user = query.from_user
        msg = IncomingMessage(
            channel=CHANNEL,
            chat_id=str(message.chat_id),
            user_id=str(user.id),
            message_id=f"cb-{query.id}",
            text=query.data or "",
            language=user.language_code,
        )
        sender = Sender(bot, message.chat_id)
        # The question is answered: take its buttons away so it cannot be pressed twice.
        with contextlib.suppress(BadRequest):
            await with_retries(
                lambda: bot.edit_message_reply_markup(
                    chat_id=message.chat_id, message_id=message.message_id, reply_markup=None
                )
            )
        if action == "consent":
            reply: Reply | None = await self.engine.consent(msg, agreed=value == "yes")
        elif action == "lang" and value in ("en", "zh"):
            reply = await self.engine.set_language(msg, value)
        elif action == "forget" and value == "yes":
            reply = await self.engine.forget(msg)
        elif action == "forget":
            reply = self.engine.writer.notice("forget_cancelled", self._lang_of(msg))
        else:
            reply = await self.engine.acknowledge(msg, "unsupported_other")
        await self._send(sender, reply)

    # --- commands -------------------------------------------------------------------------

    def _lang_of(self, msg: IncomingMessage) -> str:
        if msg.language in ("en", "zh"):
            return str(msg.language)
        return self.settings.default_language

    async def _start(self, msg: IncomingMessage, sender: Sender) -> None:
        reply = await self.engine.acknowledge(msg, "welcome")
        markup = consent_buttons(self._lang_of(msg)) if reply and reply.kind == "notice" else None
        await self._send(sender, reply, markup)

    async def _help(self, msg: IncomingMessage, sender: Sender) -> None:
        await self._send(sender, await self.engine.acknowledge(msg, "help"))

    async def _privacy(self, msg: IncomingMessage, sender: Sender) -> None:
        days = max(1, round(self.settings.session_ttl_s / 86400))
        kept = self.settings.retention_days
        if kept:
            reply = await self.engine.acknowledge(
                msg, "privacy", memory_days=days, retention_days=kept
            )
        else:  # kept until the patient deletes it
            reply = await self.engine.acknowledge(msg, "privacy_kept", memory_days=days)
        if record := self.settings.clinical_record_days:
            extra = await self.engine.acknowledge(msg, "privacy_record", record_days=record)
            if reply is not None and extra is not None:
                reply.text = f"{reply.text.rstrip()}\n\n{extra.text}"
        await self._send(sender, reply)

    async def _language(self, msg: IncomingMessage, sender: Sender) -> None:
        reply = await self.engine.acknowledge(msg, "language_choose")
        markup = _buttons(tuple((label, f"lang:{code}") for code, label in LANGUAGE_BUTTONS))
        await self._send(sender, reply, markup if reply and reply.kind == "notice" else None)

    async def _doctor(self, msg: IncomingMessage, sender: Sender) -> None:
        reply = await self.engine.request_doctor(msg)
        await self._send(sender, reply, self._markup(reply))

    async def _my_data(self, msg: IncomingMessage, sender: Sender) -> None:
        language = self._lang_of(msg)
        try:
            bundle = await self.engine.export_data(msg)
        except StorageUnavailable:
            await self._send(sender, self.engine.writer.notice("forget_failed", language), None)
            return
        if bundle is None:
            await sender.send(self.engine.writer.text("mydata_none", language))
            return
        data = json.dumps(bundle, ensure_ascii=False, indent=1).encode()
        caption = self.engine.writer.text("mydata_caption", language)
        await with_retries(
            lambda: sender.bot.send_document(
                sender.chat_id,
                document=InputFile(data, filename="carebot-my-data.json"),
                caption=caption,
            )
        )

    async def _forget(self, msg: IncomingMessage, sender: Sender) -> None:
        reply = await self.engine.acknowledge(msg, "forget_confirm")
        words = BUTTONS.get(self._lang_of(msg), BUTTONS["en"])
        markup = _buttons(((words["delete"], "forget:yes"), (words["keep"], "forget:no")))
        await self._send(sender, reply, markup if reply and reply.kind == "notice" else None)

    # --- replies --------------------------------------------------------------------------

    def _markup(self, reply: Reply) -> InlineKeyboardMarkup | None:
        if reply.kind == "consent":
            return consent_buttons(detect_language(reply.text, "en"))
        return None

    async def _send(
        self, sender: Sender, reply: Reply | None, markup: InlineKeyboardMarkup | None = None
    ) -> None:
        """Send a reply unless it already arrived (a replay), and record that it did."""
        if reply is None or reply.kind == "delivered":
            return
        await self.engine.sending(reply)  # from here a crash leaves it "may have arrived"
        try:
            sent = await sender.send(reply.unsent(), markup or self._markup(reply))
        except Exception:
            await self.engine.sending(reply, begins=False)  # refused: a retry sends it
            raise
        await self.engine.delivered(reply, [m.message_id for m in sent])
