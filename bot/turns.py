"""One turn of a chat: store the message first, hold the chat's turn, remember, store the reply.

Every engine entry point (a message, a button, a command) runs its work through `Turns.run`,
so each is stored before processing, idempotent on its message id, ordered per chat, and
answered calmly when something fails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot import metrics
from bot.early_warning import EarlyWarning
from bot.errors import MemoryUnavailable, StorageUnavailable
from bot.locks import ChatLocks
from bot.memory.base import SessionStore, Turn
from bot.models import ChatState, IncomingMessage, Reply, TriageLevel, Warned, utcnow
from bot.replies import LOCALE, EngineOptions, ReplyWriter, clean_text, detect_language
from bot.storage.repository import Storage, StoredIncoming
from bot.triage.service import TriageService

logger = logging.getLogger("bot.engine")
# A unit of work on a stored message: the reply (None: stay quiet), state and history.
Outcome = tuple[Reply | None, ChatState, list[Turn]]
Work = Callable[[IncomingMessage, StoredIncoming], Awaitable[Outcome]]


class Turns:
    """Run work on stored messages, one at a time per chat."""

    def __init__(
        self,
        storage: Storage,
        sessions: SessionStore,
        triage: TriageService,
        writer: ReplyWriter,
        options: EngineOptions,
    ) -> None:
        self.storage, self.sessions, self.triage = storage, sessions, triage
        self.writer, self.options = writer, options
        self.locks = ChatLocks()

    async def run(
        self, msg: IncomingMessage, work: Work, early: EarlyWarning | None = None
    ) -> Reply | None:
        """Store the message, run `work` on it in the chat's turn, store and return the reply.

        `early` is the message's early warning: it fires if the turn starts late (the chat's
        turn or the database slow), and is settled here, once the turn has started.
        """
        arrived = time.perf_counter()
        msg = msg.model_copy(update={"text": clean_text(msg.text)})
        async with self.locks.hold(msg.chat_key):
            LOCALE.set(msg.language)
            try:
                stored = await self.storage.record_incoming(msg)
            except StorageUnavailable:
                warned = await early.settle() if early else None
                return await self.fallback(msg, "storage_unavailable", warned)
            if early is not None and (warned := await early.settle()) is not None:
                msg = msg.model_copy(update={"warned": warned})
            if stored.duplicate and stored.previous_reply is not None:
                return self._answered_before(msg, stored, stored.previous_reply)
            metrics.MESSAGES.labels(msg.channel).inc()
            started = time.perf_counter()
            try:
                reply, state, history = await work(msg, stored)
            except Exception as exc:  # the last line of defence: a calm reply, not silence
                logger.error(
                    "processing failed: message=%s error=%s",
                    stored.message_id,
                    type(exc).__name__,
                    exc_info=logger.isEnabledFor(logging.DEBUG),
                )
                await self.quietly(
                    self.storage.mark(stored.message_id, "failed", type(exc).__name__)
                )
                return await self.fallback(msg, "processing_failed", msg.warned)
            await self.finish(msg, stored, reply, state, history)
            if reply is not None and reply.level is not None:
                metrics.TRIAGE.labels(reply.level.value).inc()
                if reply.level is TriageLevel.EMERGENCY:
                    metrics.EMERGENCY_REPLY.observe(time.perf_counter() - arrived)
            logger.info(
                "handled message=%s kind=%s level=%s in %.0f ms",
                stored.message_id,
                reply.kind if reply else "none",
                reply.level if reply else None,
                (time.perf_counter() - started) * 1000,
            )
            return reply

    def _answered_before(self, msg: IncomingMessage, stored: StoredIncoming, text: str) -> Reply:
        """A message answered before (a replay): its stored reply, to be sent only if it
        never arrived.

        A send that began and was never confirmed (a crash mid-send) may have arrived:
        Telegram has no idempotency key. Only an emergency instruction is repeated then
        (said twice beats not said); any other reply becomes a short note, so the patient
        is neither left wondering nor given the same answer twice.
        """
        kind = "delivered" if stored.previous_delivered else "duplicate"
        unsure = stored.previous_unconfirmed and stored.previous_level != "emergency"
        if unsure and kind != "delivered":
            language = stored.state.language or msg.language or self.options.default_language
            text = self.writer.text("reply_unconfirmed", language)
            kind = "unconfirmed"
        return Reply(text=text, kind=kind, duplicate=True, message_id=stored.previous_reply_id)

    async def fallback(
        self, msg: IncomingMessage, text_key: str, warned: Warned | None = None
    ) -> Reply:
        """Reply when normal processing is impossible: red flags still get their answer
        (once: an instruction already sent ahead, `warned`, is not sent again)."""
        language = detect_language(msg.text, self.options.default_language)
        triage = await self.triage.adecide([msg.text], language, ask=False)
        if triage.rule_level is TriageLevel.EMERGENCY or warned is not None:
            reply = self.writer.emergency(triage.hits, language)
            if warned is not None:
                reply.text = reply.shown = warned.text
            if text_key == "storage_unavailable":  # doctors cannot see it: say so plainly
                reply.text = f"{reply.text}\n\n{self.writer.text('not_saved_note', language)}"
            return reply
        return Reply(text=self.writer.text(text_key, language), kind="error")

    async def recall(
        self, msg: IncomingMessage, stored: StoredIncoming
    ) -> tuple[ChatState, list[Turn]]:
        """The chat's state (from the database) and recent turns (cached, else rebuilt)."""
        state = stored.state.model_copy(deep=True)
        window = self.options.memory_s
        if state.saved_at is not None and (utcnow() - state.saved_at).total_seconds() > window:
            state = state.expired()  # a new episode: old warnings and questions are done
        limit = self.options.history_turns
        try:
            history = await self.sessions.history(msg.chat_key, limit)
        except MemoryUnavailable:
            logger.warning("session memory unavailable; rebuilding from the database")
            history = None
        # The cache holds what the database holds only when it ends at the same message.
        if not history or history[-1].message_id != stored.last_message_id:
            history = await self.storage.recent_turns(
                stored.conversation_id, limit, before_id=stored.message_id, window_s=window
            )
        return state, history

    async def finish(
        self,
        msg: IncomingMessage,
        stored: StoredIncoming,
        reply: Reply | None,
        state: ChatState,
        history: list[Turn],
    ) -> None:
        """Store the reply with the chat's state, then cache the turns; never loses the reply."""
        patient = Turn(role="patient", text=msg.text, message_id=stored.message_id)
        if reply is None:  # kept without a reply: only the patient's turn is remembered
            await self.quietly(self.storage.save_state(stored.conversation_id, state))
            await self.quietly(self.sessions.append(msg.chat_key, patient))
            return
        reply.prompt_versions = dict(self.writer.prompts.versions)
        meta: dict[str, Any] = {
            "prompt_versions": reply.prompt_versions,
            "level": reply.level,
            "triage": reply.triage,
            "red_flags": [h.rule_id for h in reply.red_flags],
            "citations": [c.model_dump() for c in reply.citations],
            "grounded": reply.grounded,
            "llm_error": reply.llm_error,
        }
        try:
            reply.message_id = await self.storage.record_reply(stored, reply, meta, state)
        except StorageUnavailable:
            logger.error("reply to message=%s sent but not stored", stored.message_id)
        bot = Turn(
            role="bot", text=reply.text, asked=_asked(reply.triage), message_id=reply.message_id
        )
        await self.quietly(self.sessions.append(msg.chat_key, patient, bot))

    @staticmethod
    async def quietly(action: Any) -> None:
        """Await a best-effort write whose data also lives in the database."""
        try:
            await action
        except (MemoryUnavailable, StorageUnavailable) as exc:
            logger.warning("best-effort write skipped: %s", type(exc).__name__)


def _asked(record: dict[str, Any] | None) -> list[str]:
    """The question ids a reply asked, from its triage record."""
    asked = (record or {}).get("asked") or []
    return [str(q) for q in asked] if isinstance(asked, list) else []
