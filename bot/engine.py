"""The conversation engine: one patient message in, one safe reply out, for every channel."""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from dataclasses import dataclass
from typing import Any

from bot.errors import MemoryUnavailable, StorageUnavailable
from bot.locks import ChatLocks
from bot.memory.base import SessionState, SessionStore, Turn
from bot.models import IncomingMessage, RedFlagHit, Reply, TriageLevel
from bot.prompts import PromptLibrary
from bot.storage.repository import Storage, StoredIncoming
from bot.triage.redflags import RedFlagRules
from rag.answer import Answer, GuidelineAnswerer, OnDelta

logger = logging.getLogger(__name__)
_CJK = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]{2,}")
_CONSENT_WORDS = frozenset(
    {
        "yes",
        "y",
        "yes please",
        "yes i agree",
        "i agree",
        "agree",
        "ok",
        "okay",
        "sure",
        "i consent",
        "consent",
        "/consent",
        "同意",
        "我同意",
        "是",
        "好",
        "好的",
        "可以",
    }
)


@dataclass(frozen=True)
class EngineOptions:
    """The engine's share of the settings."""

    emergency_number: str = "112"
    default_language: str = "en"
    max_message_chars: int = 4000
    history_turns: int = 20


def detect_language(text: str, fallback: str) -> str:
    """Return "zh" for Chinese text, "en" for Latin-script words, else the fallback."""
    if _CJK.search(text):
        return "zh"
    return "en" if _LATIN.search(text) else fallback


def clean_text(text: str) -> str:
    """Normalise Unicode and drop NULs and other control characters (keep newlines, tabs)."""
    text = unicodedata.normalize("NFC", text)
    return "".join(
        ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs")
    )


def _is_consent(text: str) -> bool:
    return text.strip().lower().rstrip(".!。！") in _CONSENT_WORDS


class ConversationEngine:
    """Store, recall, check red flags, ask consent, answer from guidelines, store the reply."""

    def __init__(
        self,
        storage: Storage,
        sessions: SessionStore,
        rules: RedFlagRules,
        answerer: GuidelineAnswerer,
        prompts: PromptLibrary,
        options: EngineOptions | None = None,
    ) -> None:
        self.storage, self.sessions, self.rules = storage, sessions, rules
        self.answerer, self.prompts = answerer, prompts
        self.options = options or EngineOptions()
        self._locks = ChatLocks()

    def _text(self, key: str, language: str, **values: object) -> str:
        return self.prompts.text(
            key, language, emergency_number=self.options.emergency_number, **values
        )

    async def handle(self, msg: IncomingMessage, on_delta: OnDelta | None = None) -> Reply:
        """Answer one incoming message; never raises, never stays silent."""
        msg = msg.model_copy(update={"text": clean_text(msg.text)})
        async with self._locks.hold(msg.chat_key):
            try:
                stored = await self.storage.record_incoming(msg)
            except StorageUnavailable:
                return self._fallback(msg, "storage_unavailable")
            if stored.duplicate and stored.previous_reply is not None:
                return Reply(text=stored.previous_reply, kind="duplicate", duplicate=True)
            started = time.perf_counter()
            try:
                reply, state, history = await self._process(msg, stored, on_delta)
            except Exception as exc:  # the last line of defence: a calm reply, not silence
                logger.error(
                    "processing failed: message=%s error=%s",
                    stored.message_id,
                    type(exc).__name__,
                    exc_info=logger.isEnabledFor(logging.DEBUG),
                )
                await self._quietly(self.storage.mark_failed(stored.message_id, type(exc).__name__))
                return self._fallback(msg, "processing_failed")
            await self._finish(msg, stored, reply, state, history)
            logger.info(
                "answered message=%s kind=%s level=%s in %.0f ms",
                stored.message_id,
                reply.kind,
                reply.level,
                (time.perf_counter() - started) * 1000,
            )
            return reply

    def _fallback(self, msg: IncomingMessage, text_key: str) -> Reply:
        """Reply when normal processing is impossible: red flags still get their answer."""
        language = detect_language(msg.text, self.options.default_language)
        hits = self.rules.check([msg.text], language)
        if self.rules.level(hits) is TriageLevel.EMERGENCY:
            return self._emergency(hits, language)
        return Reply(text=self._text(text_key, language), kind="error")

    async def _recall(
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

    async def _process(
        self, msg: IncomingMessage, stored: StoredIncoming, on_delta: OnDelta | None
    ) -> tuple[Reply, SessionState, list[Turn]]:
        state, history = await self._recall(msg, stored)
        language = detect_language(
            msg.text, state.language or msg.language or self.options.default_language
        )
        state.language = language

        # Red flags on everything the patient said, before consent and before any model.
        patient_texts = [t.text for t in history if t.role == "patient"] + [msg.text]
        hits = self.rules.check(patient_texts, language)
        emergencies = [h for h in hits if h.level is TriageLevel.EMERGENCY]
        if any(h.rule_id not in state.announced_flags for h in emergencies):
            state.announced_flags = sorted({*state.announced_flags, *(h.rule_id for h in hits)})
            try:
                state.escalation_id = await self.storage.open_escalation(
                    stored, TriageLevel.EMERGENCY, [h.rule_id for h in emergencies], "triage"
                )
            except StorageUnavailable:
                logger.error(
                    "could not open an emergency escalation for message=%s", stored.message_id
                )
            return self._emergency(hits, language), state, history

        reply = await self._converse(msg, stored, state, history, language, hits, on_delta)
        if emergencies:
            # Already warned: answer this message, but keep the warning in front of it.
            explanation = " ".join(dict.fromkeys(h.explanation for h in emergencies))
            reminder = self._text("emergency_reminder", language, explanation=explanation)
            reply.text = f"{reminder}\n\n{reply.text}"
            reply.level, reply.red_flags = TriageLevel.EMERGENCY, hits
        return reply, state, history

    async def _converse(
        self,
        msg: IncomingMessage,
        stored: StoredIncoming,
        state: SessionState,
        history: list[Turn],
        language: str,
        hits: list[RedFlagHit],
        on_delta: OnDelta | None,
    ) -> Reply:
        """Consent first, then a guideline answer (state is updated in place)."""
        text = msg.text
        said_yes = _is_consent(text)
        if not state.consent and (msg.consent or said_yes):
            await self.storage.record_consent(stored.patient_id)
            state.consent = True
            if said_yes:
                if state.pending_text is None:
                    return Reply(text=self._text("consent_thanks", language), kind="consent")
                # Answer the question the patient asked before agreeing.
                text, state.pending_text = state.pending_text, None
        if not state.consent:
            if text.strip():
                state.pending_text = text
            return Reply(text=self._text("consent", language), kind="consent")
        if not text.strip():
            return Reply(text=self._text("empty_message", language), kind="notice")
        limit = self.options.max_message_chars
        answer = await self.answerer.answer(text[:limit], history, language, on_delta)
        return self._answer_reply(answer, language, hits, truncated=len(text) > limit)

    def _emergency(self, hits: list[RedFlagHit], language: str) -> Reply:
        explanation = " ".join(dict.fromkeys(h.explanation for h in hits))
        return Reply(
            text=self._text("emergency", language, explanation=explanation),
            kind="emergency",
            level=TriageLevel.EMERGENCY,
            red_flags=hits,
        )

    def _answer_reply(
        self, answer: Answer, language: str, hits: list[RedFlagHit], truncated: bool
    ) -> Reply:
        parts = []
        if truncated:
            parts.append(self._text("too_long", language, limit=self.options.max_message_chars))
        if not answer.found:
            parts.append(self._text("no_guideline", language))
        else:
            parts.append(answer.text)
            sources = [
                f"[{c.number}] {c.title} - {c.section} ({c.source})" for c in answer.citations
            ]
            parts.append(self._text("sources_heading", language) + "\n" + "\n".join(sources))
        parts.append(self._text("disclaimer", language))
        return Reply(
            text="\n\n".join(parts),
            kind="answer",
            level=self.rules.level(hits),
            red_flags=hits,
            citations=answer.citations,
            grounded=answer.grounded if answer.found else None,
            llm_error=answer.llm_error,
        )

    async def _finish(
        self,
        msg: IncomingMessage,
        stored: StoredIncoming,
        reply: Reply,
        state: SessionState,
        history: list[Turn],
    ) -> None:
        """Store the reply and update memory; a failure here never takes the reply away."""
        meta: dict[str, Any] = {
            "red_flags": [h.rule_id for h in reply.red_flags],
            "citations": [c.model_dump() for c in reply.citations],
            "grounded": reply.grounded,
            "llm_error": reply.llm_error,
        }
        try:
            reply.message_id = await self.storage.record_reply(stored, reply, meta)
        except StorageUnavailable:
            logger.error("reply to message=%s sent but not stored", stored.message_id)
        await self._quietly(
            self.sessions.append(
                msg.chat_key, Turn(role="patient", text=msg.text), Turn(role="bot", text=reply.text)
            )
        )
        await self._quietly(self.sessions.set_state(msg.chat_key, state))

    @staticmethod
    async def _quietly(action: Any) -> None:
        """Await a best-effort write whose data also lives in the database."""
        try:
            await action
        except (MemoryUnavailable, StorageUnavailable) as exc:
            logger.warning("best-effort write skipped: %s", type(exc).__name__)
