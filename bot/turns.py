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

from bot.errors import MemoryUnavailable, StorageUnavailable
from bot.locks import ChatLocks
from bot.memory.base import SessionState, SessionStore, Turn
from bot.models import IncomingMessage, Reply, TriageLevel
from bot.replies import LOCALE, EngineOptions, ReplyWriter, clean_text, detect_language
from bot.storage.repository import Storage, StoredIncoming
from bot.triage.service import TriageService

logger = logging.getLogger("bot.engine")
# A unit of work on a stored message: the reply (None: stay quiet), state and history.
Outcome = tuple[Reply | None, SessionState, list[Turn]]
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

    async def run(self, msg: IncomingMessage, work: Work) -> Reply | None:
        """Store the message, run `work` on it in the chat's turn, store and return the reply."""
        msg = msg.model_copy(update={"text": clean_text(msg.text)})
        async with self.locks.hold(msg.chat_key):
            LOCALE.set(msg.language)
            try:
                stored = await self.storage.record_incoming(msg)
            except StorageUnavailable:
                return await self.fallback(msg, "storage_unavailable")
            if stored.duplicate and stored.previous_reply is not None:
                return Reply(text=stored.previous_reply, kind="duplicate", duplicate=True)
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
                return await self.fallback(msg, "processing_failed")
            await self.finish(msg, stored, reply, state, history)
            logger.info(
                "handled message=%s kind=%s level=%s in %.0f ms",
                stored.message_id,
                reply.kind if reply else "none",
                reply.level if reply else None,
                (time.perf_counter() - started) * 1000,
            )
            return reply

    async def fallback(self, msg: IncomingMessage, text_key: str) -> Reply:
        """Reply when normal processing is impossible: red flags still get their answer."""
        language = detect_language(msg.text, self.options.default_language)
        triage = await self.triage.adecide([msg.text], language, ask=False)
        if triage.rule_level is TriageLevel.EMERGENCY:
            return self.writer.emergency(triage.hits, language)
        return Reply(text=self.writer.text(text_key, language), kind="error")

    async def recall(
        self, msg: IncomingMessage, stored: StoredIncoming
    ) -> tuple[SessionState, list[Turn]]:
        """Load state and history from memory, or rebuild them from the database."""
        try:
            state = await self.sessions.get_state(msg.chat_key) or SessionState()
            history = await self.sessions.history(msg.chat_key, self.options.history_turns)
        except MemoryUnavailable:
            logger.warning("session memory unavailable; rebuilding from the database")
            state = SessionState()
            history = await self.storage.recent_turns(
                stored.conversation_id, self.options.history_turns + 1
            )
            history = history[:-1]  # the database already holds this message
        state.consent = state.consent or stored.consented
        return state, history

    async def finish(
        self,
        msg: IncomingMessage,
        stored: StoredIncoming,
        reply: Reply | None,
        state: SessionState,
        history: list[Turn],
    ) -> None:
        """Store the reply and update memory; a failure here never takes the reply away."""
        if reply is None:  # kept without a reply: only the patient's turn is remembered
            await self.quietly(
                self.sessions.append(msg.chat_key, Turn(role="patient", text=msg.text))
            )
            await self.quietly(self.sessions.set_state(msg.chat_key, state))
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
            reply.message_id = await self.storage.record_reply(stored, reply, meta)
        except StorageUnavailable:
            logger.error("reply to message=%s sent but not stored", stored.message_id)
        await self.quietly(
            self.sessions.append(
                msg.chat_key,
                Turn(role="patient", text=msg.text),
                Turn(role="bot", text=reply.text, asked=_asked(reply.triage)),
            )
        )
        await self.quietly(self.sessions.set_state(msg.chat_key, state))

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
