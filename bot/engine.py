"""The conversation engine: one patient message in, one safe reply out, for every channel."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from bot.cluster_events import ClusterEvents
from bot.early_warning import EarlyWarning, Send
from bot.errors import StorageUnavailable
from bot.memory.base import SessionStore, Turn
from bot.memory.erasure import MemoryErasure
from bot.models import ChatState, IncomingMessage, RedFlagHit, Reply, TriageLevel, Warned
from bot.prompts import PromptLibrary
from bot.replies import (
    EngineOptions,
    ReplyWriter,
    detect_language,
    is_consent,
)
from bot.storage.patient_export import export_patient
from bot.storage.repository import Forgotten, Storage, StoredIncoming
from bot.triage.service import PatientMessage, TriageResult, TriageService
from bot.turns import Outcome, Turns
from rag.answer import GuidelineAnswerer, OnDelta

logger = logging.getLogger(__name__)
LANGUAGES = ("en", "zh")


class CaseHooks(Protocol):
    """What the engine tells the doctors' side (bot.cases.service.CaseService)."""

    def opened_soon(self, case_id: int) -> None: ...

    async def waiting_text(self, case_id: int, language: str) -> str: ...

    async def patient_message(self, case_id: int, text: str, red_flags: list[str]) -> None: ...

    async def forgotten(self, erased: Forgotten) -> None: ...


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
        self.storage, self.triage = storage, triage
        self.rules = triage.rules
        self.answerer, self.prompts = answerer, prompts
        self.options = options or EngineOptions()
        self.writer = ReplyWriter(prompts, self.rules, self.options, triage.interview)
        self.turns = Turns(storage, sessions, triage, self.writer, self.options)
        self.locks = self.turns.locks
        self.cases: CaseHooks | None = None  # set when doctors' cases are served
        self.cluster = ClusterEvents()  # the other workers (bot/runtime.py sets it)

    @property
    def sessions(self) -> SessionStore:
        """Session memory (one store, shared with the turns that read and write it)."""
        return self.turns.sessions

    @sessions.setter
    def sessions(self, store: SessionStore) -> None:
        self.turns.sessions = store

    def _text(self, key: str, language: str, **values: object) -> str:
        return self.writer.text(key, language, **values)

    def early_warning(self, msg: IncomingMessage, send: Send, after_s: float) -> EarlyWarning:
        """A started early warning for a patient's text (pass it to `handle`/`acknowledge`)."""
        return EarlyWarning(
            msg, send, self.triage, self.writer, after_s, self.options.default_language
        ).start()

    async def handle(
        self,
        msg: IncomingMessage,
        on_delta: OnDelta | None = None,
        early: EarlyWarning | None = None,
    ) -> Reply:
        """Answer one incoming message; never raises, never stays silent."""

        async def work(m: IncomingMessage, stored: StoredIncoming) -> Outcome:
            return await self._process(m, stored, on_delta)

        reply = await self.turns.run(msg, work, early)
        assert reply is not None  # _process always answers
        return reply

    async def unsaved(self, msg: IncomingMessage, warned: Warned | None = None) -> Reply:
        """Answer a message the channel could not store: from the rules, saying it is unsaved."""
        return await self.turns.fallback(msg, "storage_unavailable", warned)

    async def sending(self, reply: Reply, begins: bool = True) -> None:
        """Record that the channel begins sending a stored reply (`begins` False: the send
        failed, nothing of it landed), so a replay after a crash knows it may have arrived.

        Not for an emergency reply: after a crash it is sent again either way (said twice
        beats not said), so nothing needs noting, and no database write waits before it.
        """
        if reply.message_id is not None and reply.level is not TriageLevel.EMERGENCY:
            await self.turns.quietly(self.storage.mark_sending(reply.message_id, begins))

    async def delivered(self, reply: Reply, channel_ids: list[int]) -> None:
        """Record that a stored reply reached the patient, so a replay never sends it again."""
        if reply.message_id is not None:
            await self.turns.quietly(self.storage.mark_delivered(reply.message_id, channel_ids))

    async def acknowledge(
        self,
        msg: IncomingMessage,
        notice: str | None,
        retriage_from: TriageLevel = TriageLevel.EMERGENCY,
        early: EarlyWarning | None = None,
        **values: object,
    ) -> Reply | None:
        """Store a message the channel will not answer in full (a command, a photo, a flood).

        Red flags in its text at `retriage_from` or above, not yet announced, send it through
        the full path (an emergency is answered as one); otherwise the patient text `notice`
        is the reply, or, when None, the message is kept without one.
        """

        async def work(m: IncomingMessage, stored: StoredIncoming) -> Outcome:
            state, history = await self.turns.recall(m, stored)
            language = state.language or m.language or self.options.default_language
            language = detect_language(m.text, language) if m.text.strip() else language
            hits = []
            if m.text.strip():
                hits = (await self.triage.adecide([m.text], language, ask=False)).hits
            if any(
                h.level.rank >= retriage_from.rank and h.rule_id not in state.announced_flags
                for h in hits
            ):
                return await self._process(m, stored, None)
            if notice is None:
                await self.turns.quietly(self.storage.mark(stored.message_id, "noted"))
                return None, state, history
            return self.writer.notice(notice, language, **values), state, history

        return await self.turns.run(msg, work, early)

    async def consent(self, msg: IncomingMessage, agreed: bool) -> Reply:
        """Record the patient's answer to the consent question (a button, not typed words)."""

        async def work(m: IncomingMessage, stored: StoredIncoming) -> Outcome:
            state, history = await self.turns.recall(m, stored)
            language = state.language or m.language or self.options.default_language
            if not agreed:
                return self.writer.notice("consent_declined", language), state, history
            if state.consent:
                return self.writer.notice("consent_thanks", language), state, history
            # The typed "yes" path: records consent and answers any question held back.
            said = "同意" if language == "zh" else "yes"
            return await self._process(m.model_copy(update={"text": said}), stored, None)

        reply = await self.turns.run(msg, work)
        assert reply is not None
        return reply

    async def request_doctor(self, msg: IncomingMessage) -> Reply:
        """Open a case for a person on the patient's request (after consent)."""

        async def work(m: IncomingMessage, stored: StoredIncoming) -> Outcome:
            state, history = await self.turns.recall(m, stored)
            language = state.language or m.language or self.options.default_language
            if not state.consent:
                return self.writer.notice("consent", language), state, history
            if state.escalation_id is not None:
                reply = self.writer.notice("doctor_already_requested", language)
                return reply, state, history
            note = await self._escalate(
                stored, state, TriageLevel.ROUTINE, ["patient_request"], language, "patient"
            )
            reply = self.writer.notice("doctor_requested", language)
            reply.text = f"{reply.text}\n\n{note}" if note else reply.text
            return reply, state, history

        reply = await self.turns.run(msg, work)
        assert reply is not None
        return reply

    async def set_language(self, msg: IncomingMessage, language: str) -> Reply:
        """Remember the language the patient chose and answer in it."""

        async def work(m: IncomingMessage, stored: StoredIncoming) -> Outcome:
            state, history = await self.turns.recall(m, stored)
            state.language = language
            await self.storage.set_language(stored.patient_id, language)
            return self.writer.notice("language_set", language), state, history

        reply = await self.turns.run(msg.model_copy(update={"language": language}), work)
        assert reply is not None
        return reply

    async def export_data(self, msg: IncomingMessage) -> dict[str, Any] | None:
        """The patient's own copy of everything stored about them (a FHIR-shaped Bundle),
        audited; None when nothing is stored. Raises StorageUnavailable."""
        async with self.locks.hold(msg.chat_key):
            return await self.storage.run(lambda s: export_patient(s, msg.channel, msg.user_id))

    async def forget(self, msg: IncomingMessage) -> Reply:
        """Delete everything stored about the patient: database rows, session memory, the
        in-memory caches, and (through the doctors' side) the bot's alerts and relays."""
        language = msg.language or self.options.default_language
        async with self.locks.hold(msg.chat_key):
            try:
                erased = await self.storage.forget_patient(
                    msg.channel, msg.user_id, keep_record=self.options.keep_clinical_record
                )
            except StorageUnavailable:
                return Reply(text=self._text("forget_failed", language), kind="error")
            keys = sorted({msg.chat_key, *erased.chat_keys})
            # Session memory down: recorded and retried until it is gone, and said so.
            done = await MemoryErasure(self.storage, self.sessions).forget(keys)
            await self.cluster.clear_caches()  # every worker's, not only this one's
            if self.cases is not None and (erased.case_ids or erased.doctor_messages):
                await self.cases.forgotten(erased)
            logger.info("forgot a patient: %s", erased.counts)
            key = "forgotten_record_kept" if erased.record_kept else "forgotten"
            if not done:
                key += "_memory_pending"
            return Reply(text=self._text(key, language), kind="notice")

    async def _process(
        self, msg: IncomingMessage, stored: StoredIncoming, on_delta: OnDelta | None
    ) -> tuple[Reply, ChatState, list[Turn]]:
        state, history = await self.turns.recall(msg, stored)
        language = detect_language(
            msg.text, state.language or msg.language or self.options.default_language
        )
        state.language = language

        # One triage decision on everything the patient said (and answered), before consent
        # and before any model: it decides the emergency reply, the questions and the level.
        conversation = _conversation(history, msg.text)
        asking = state.followup_rounds < self.options.max_followup_rounds
        triage = await self.triage.adecide(conversation, language, ask=asking)
        hits = triage.hits
        emergencies = self.rules.emergencies(hits)
        if state.mode == "with_doctor" and state.escalation_id is not None and self.cases:
            # A doctor holds the case: the message goes to them; the rules still run.
            latest = len(conversation) - 1
            fresh = [h.rule_id for h in hits if any(e.message == latest for e in h.evidence)]
            await self.cases.patient_message(state.escalation_id, msg.text, fresh)
            if any(h.rule_id not in state.announced_flags for h in emergencies):
                reply = await self._open_emergency(stored, state, hits, language, msg.warned)
                return reply, state, history
            return Reply(text="", kind="relayed", red_flags=hits), state, history
        if any(h.rule_id not in state.announced_flags for h in emergencies):
            reply = await self._open_emergency(stored, state, hits, language, msg.warned)
            return reply, state, history

        reply = await self._converse(
            msg, stored, state, history, language, conversation, triage, on_delta
        )
        if emergencies:
            # Already warned: answer this message, but keep the warning in front of it.
            reply.text = f"{self.writer.reminder(emergencies, language)}\n\n{reply.text}"
            reply.level, reply.red_flags = TriageLevel.EMERGENCY, hits
        return reply, state, history

    async def _open_emergency(
        self,
        stored: StoredIncoming,
        state: ChatState,
        hits: list[RedFlagHit],
        language: str,
        warned: Warned | None = None,
    ) -> Reply:
        emergencies = self.rules.emergencies(hits) or hits
        state.announced_flags = sorted({*state.announced_flags, *(h.rule_id for h in hits)})
        reply = self.writer.emergency(hits, language)
        if warned is not None and {h.rule_id for h in emergencies} <= set(warned.flags):
            # Sent ahead of this slow turn: not again; the case is still opened below.
            reply.text = reply.shown = warned.text
        note = await self._escalate(
            stored, state, TriageLevel.EMERGENCY, [h.rule_id for h in emergencies], language
        )
        reply.text = f"{reply.text}\n\n{note}" if note else reply.text
        return reply

    async def _escalate(
        self,
        stored: StoredIncoming,
        state: ChatState,
        level: TriageLevel,
        reasons: list[str],
        language: str,
        opened_by: str = "triage",
    ) -> str:
        """Open (or raise) the chat's case; return the patient's note on the queue."""
        try:
            state.escalation_id = await self.storage.open_escalation(
                stored, level, reasons, opened_by
            )
        except StorageUnavailable:
            logger.error("could not open a %s escalation for message=%s", level, stored.message_id)
            return ""
        if self.cases is None:
            return ""
        self.cases.opened_soon(state.escalation_id)
        try:
            return await self.cases.waiting_text(state.escalation_id, language)
        except StorageUnavailable:
            return ""

    async def _converse(
        self,
        msg: IncomingMessage,
        stored: StoredIncoming,
        state: ChatState,
        history: list[Turn],
        language: str,
        conversation: list[PatientMessage],
        triage: TriageResult,
        on_delta: OnDelta | None,
    ) -> Reply:
        """Consent, triage (with follow-up questions), then a guideline answer."""
        text = msg.text
        said_yes = is_consent(text)
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

        triage = await self.triage.consult(triage, conversation)
        if triage.level is TriageLevel.EMERGENCY and not self.rules.emergencies(triage.hits):
            # Only the model called it an emergency (vote "raise"): act on it all the same.
            return await self._open_emergency(stored, state, triage.hits, language)
        note = ""
        if triage.level is TriageLevel.URGENT and state.escalation_id is None:
            note = await self._escalate(
                stored, state, TriageLevel.URGENT, [h.rule_id for h in triage.hits], language
            )
        if triage.questions:
            state.followup_rounds += 1
            state.pending_text = state.pending_text or text
            reply = self.writer.followup(triage, language)
            reply.text = f"{reply.text}\n\n{note}" if note else reply.text
            return reply

        question = state.pending_text or text
        state.pending_text, state.followup_rounds = None, 0
        limit = self.options.max_message_chars
        answer = await self.answerer.answer(question[:limit], history, language, on_delta)
        reply = self.writer.answer(answer, language, triage, truncated=len(question) > limit)
        reply.text = f"{note}\n\n{reply.text}" if note else reply.text
        return reply


def _conversation(history: list[Turn], latest: str) -> list[PatientMessage]:
    """The patient's messages, each with the question ids the bot asked just before it."""
    messages: list[PatientMessage] = []
    asked: list[str] = []
    for turn in history:
        if turn.role == "patient":
            messages.append(PatientMessage(text=turn.text, asked=asked))
            asked = []
        elif turn.role == "bot":
            asked = list(turn.asked)
    messages.append(PatientMessage(text=latest, asked=asked))
    return messages
