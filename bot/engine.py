"""The conversation engine: one patient message in, one safe reply out, for every channel."""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from bot.errors import MemoryUnavailable, StorageUnavailable
from bot.locks import ChatLocks
from bot.memory.base import SessionState, SessionStore, Turn
from bot.models import IncomingMessage, RedFlagHit, Reply, TriageLevel
from bot.prompts import PromptLibrary
from bot.storage.repository import Storage, StoredIncoming
from bot.triage.classifier import MissingFact
from bot.triage.service import TriageResult, TriageService, is_general_question
from rag.answer import Answer, GuidelineAnswerer, OnDelta

logger = logging.getLogger(__name__)
# The locale of the message being handled: each channel request runs in its own task, so
# concurrent chats never see each other's locale.
_LOCALE: ContextVar[str | None] = ContextVar("carebot_locale", default=None)
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
    emergency_numbers: dict[str, str] | None = None  # per locale ("zh", "en-gb")
    default_language: str = "en"
    max_followup_rounds: int = 2
    max_questions_per_round: int = 3
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


def _triage_record(triage: TriageResult) -> dict[str, Any]:
    """Summarise a triage decision for the stored reply (rule ids and levels, no text)."""
    return {
        "level": triage.level.value,
        "rule_level": triage.rule_level.value,
        "decided_by": triage.decided_by,
        "rules": [h.rule_id for h in triage.hits],
        "model_level": triage.model.level.value if triage.model else None,
        "model_error": triage.model_error,
        "missing": [m.value for m in triage.missing],
    }


def _is_consent(text: str) -> bool:
    return text.strip().lower().rstrip(".!。！") in _CONSENT_WORDS


class ConversationEngine:
    """Store, recall, check red flags, ask consent, answer from guidelines, store the reply."""

    def __init__(
        self,
        storage: Storage,
        sessions: SessionStore,
        triage: TriageService,
        answerer: GuidelineAnswerer,
        prompts: PromptLibrary,
        options: EngineOptions | None = None,
    ) -> None:
        self.storage, self.sessions, self.triage = storage, sessions, triage
        self.rules = triage.rules
        self.answerer, self.prompts = answerer, prompts
        self.options = options or EngineOptions()
        self._locks = ChatLocks()

    def emergency_number(self, *locales: str | None) -> str:
        """Return the emergency number for the first locale configured ("en-GB", then "en")."""
        numbers = self.options.emergency_numbers or {}
        for locale in locales:
            if locale:
                tag = locale.lower().replace("_", "-")
                for key in (tag, tag.split("-")[0]):
                    if key in numbers:
                        return numbers[key]
        return self.options.emergency_number

    def _text(self, key: str, language: str, **values: object) -> str:
        number = self.emergency_number(_LOCALE.get(), language)
        return self.prompts.text(key, language, emergency_number=number, **values)

    async def handle(self, msg: IncomingMessage, on_delta: OnDelta | None = None) -> Reply:
        """Answer one incoming message; never raises, never stays silent."""
        msg = msg.model_copy(update={"text": clean_text(msg.text)})
        async with self._locks.hold(msg.chat_key):
            _LOCALE.set(msg.language)
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
        # General questions ("what are the signs of a stroke?") report nobody's symptoms.
        said = [t.text for t in history if t.role == "patient"] + [msg.text]
        patient_texts = [t for t in said if not is_general_question(t)]
        hits = self.rules.check(patient_texts, language)
        emergencies = self.rules.emergencies(hits)
        if any(h.rule_id not in state.announced_flags for h in emergencies):
            return await self._open_emergency(stored, state, hits, language), state, history

        reply = await self._converse(msg, stored, state, history, language, patient_texts, on_delta)
        if emergencies:
            # Already warned: answer this message, but keep the warning in front of it.
            explanation = " ".join(dict.fromkeys(h.explanation for h in emergencies))
            reminder = self._text("emergency_reminder", language, explanation=explanation)
            reply.text = f"{reminder}\n\n{reply.text}"
            reply.level, reply.red_flags = TriageLevel.EMERGENCY, hits
        return reply, state, history

    async def _open_emergency(
        self, stored: StoredIncoming, state: SessionState, hits: list[RedFlagHit], language: str
    ) -> Reply:
        emergencies = self.rules.emergencies(hits) or hits
        state.announced_flags = sorted({*state.announced_flags, *(h.rule_id for h in hits)})
        await self._escalate(stored, state, TriageLevel.EMERGENCY, [h.rule_id for h in emergencies])
        return self._emergency(hits, language)

    async def _escalate(
        self, stored: StoredIncoming, state: SessionState, level: TriageLevel, reasons: list[str]
    ) -> None:
        try:
            state.escalation_id = await self.storage.open_escalation(
                stored, level, reasons, "triage"
            )
        except StorageUnavailable:
            logger.error("could not open a %s escalation for message=%s", level, stored.message_id)

    async def _converse(
        self,
        msg: IncomingMessage,
        stored: StoredIncoming,
        state: SessionState,
        history: list[Turn],
        language: str,
        patient_texts: list[str],
        on_delta: OnDelta | None,
    ) -> Reply:
        """Consent, triage (with follow-up questions), then a guideline answer."""
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

        general = is_general_question(text)
        triage = await self.triage.assess(patient_texts, language)
        if triage.level is TriageLevel.EMERGENCY and not self.rules.emergencies(triage.hits):
            # Only the model called it an emergency (vote "raise"): act on it all the same.
            return await self._open_emergency(stored, state, triage.hits, language)
        if triage.level is TriageLevel.URGENT and state.escalation_id is None:
            await self._escalate(
                stored, state, TriageLevel.URGENT, [h.rule_id for h in triage.hits]
            )
        questions = [] if general else self._next_questions(state, triage)
        if questions:
            state.pending_text = state.pending_text or text
            return self._followup_reply(triage, questions, language)

        question = state.pending_text or text
        state.pending_text, state.followup_rounds = None, 0
        limit = self.options.max_message_chars
        answer = await self.answerer.answer(question[:limit], history, language, on_delta)
        return self._answer_reply(
            answer, language, triage, truncated=len(question) > limit, general=general
        )

    def _next_questions(self, state: SessionState, triage: TriageResult) -> list[MissingFact]:
        """Pick this round's follow-up questions: unknown facts, never asked twice."""
        if state.followup_rounds >= self.options.max_followup_rounds:
            return []
        fresh = [m for m in triage.missing if m.value not in state.asked_facts]
        chosen = fresh[: self.options.max_questions_per_round]
        if chosen:
            state.followup_rounds += 1
            state.asked_facts = [*state.asked_facts, *(m.value for m in chosen)]
        return chosen

    def _followup_reply(
        self, triage: TriageResult, questions: list[MissingFact], language: str
    ) -> Reply:
        asks = [f"• {self._text('question_' + q.value, language)}" for q in questions]
        if triage.level is TriageLevel.URGENT:
            # An urgent patient gets the advice now; the questions only help the doctor.
            head = [
                self._level_advice(triage, language),
                self._text("followup_urgent_intro", language),
            ]
        else:
            head = [self._text("followup_intro", language)]
        return Reply(
            text="\n\n".join(head) + "\n" + "\n".join(asks),
            kind="followup",
            level=triage.level,
            red_flags=triage.hits,
        )

    def _level_advice(self, triage: TriageResult, language: str) -> str:
        top = [h for h in triage.hits if h.level is triage.level]
        explanation = " ".join(dict.fromkeys(h.explanation for h in top[:2]))
        return self._text(f"advice_{triage.level.value}", language, explanation=explanation)

    def _emergency(self, hits: list[RedFlagHit], language: str) -> Reply:
        explanation = " ".join(
            dict.fromkeys(h.explanation for h in self.rules.emergencies(hits) or hits)
        )
        return Reply(
            text=self._text("emergency", language, explanation=explanation),
            kind="emergency",
            level=TriageLevel.EMERGENCY,
            red_flags=hits,
        )

    def _answer_reply(
        self,
        answer: Answer,
        language: str,
        triage: TriageResult,
        truncated: bool,
        general: bool,
    ) -> Reply:
        parts = []
        if truncated:
            parts.append(self._text("too_long", language, limit=self.options.max_message_chars))
        if general:
            parts.append(self._text("general_question_note", language))
        elif triage.level is not TriageLevel.EMERGENCY:  # emergencies carry their reminder
            parts.append(self._level_advice(triage, language))
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
            level=None if general else triage.level,
            red_flags=triage.hits,
            citations=answer.citations,
            grounded=answer.grounded if answer.found else None,
            llm_error=answer.llm_error,
            triage=_triage_record(triage),
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
