"""The case lifecycle: open -> claimed -> resolved, or expired when no doctor comes in time.

Every step is stored with its audit event, published to listeners (the doctors' Telegram
group, dashboard streams), and told to the patient: waiting (with the queue position), a
doctor joined, the doctor left, or, when nobody came, what to do instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot import metrics
from bot.cases.events import CaseEvent, CaseEvents
from bot.cases.models import Actor, CaseStatus, CaseView, ClaimOutcome
from bot.cases.store import CaseStore, after
from bot.cases.summary import CaseSummarizer
from bot.errors import MemoryUnavailable, StorageUnavailable
from bot.memory.base import SessionStore, Turn
from bot.models import utcnow
from bot.replies import ReplyWriter
from bot.storage.repository import Forgotten

logger = logging.getLogger(__name__)
Send = Callable[[str, str], Awaitable[None]]  # (chat_id, text)


class PatientChannels:
    """How to reach a patient on each channel with a message nobody asked for."""

    def __init__(self) -> None:
        self._senders: dict[str, Send] = {}

    def register(self, channel: str, send: Send) -> None:
        """Let cases reach patients on `channel`."""
        self._senders[channel] = send

    async def send(self, channel: str, chat_id: str, text: str) -> bool:
        """Deliver `text`; False when the channel cannot reach the patient now."""
        send = self._senders.get(channel)
        if send is None:
            logger.warning("cannot reach a patient on channel %s; kept in the transcript", channel)
            return False
        try:
            await send(chat_id, text)
        except Exception as exc:
            logger.error("could not deliver a case message: %s", type(exc).__name__)
            return False
        return True


@dataclass(frozen=True)
class CaseOptions:
    """Deadlines: re-alert an unclaimed case after `realert_s[level]`; expire it after
    `alerts_before_expiry` alerts have gone unanswered."""

    realert_s: dict[str, float] = field(
        default_factory=lambda: {"emergency": 120.0, "urgent": 1800.0, "routine": 14400.0}
    )
    alerts_before_expiry: int = 3
    tick_s: float = 5.0
    alert_retry_s: float = 30.0  # first pause before a refused doctors' alert is sent again
    # The doctors' alert outbox: an alert not confirmed sent this long after it was due (the
    # process sending it was killed, or hangs) is sent again by the timers. None: no doctors'
    # group, nothing to confirm. Longer than a send with its network retries normally takes.
    alert_unconfirmed_s: float | None = None

    def deadline(self, level: str) -> float:
        """Seconds until the next alert for a case of `level`."""
        return self.realert_s.get(level, self.realert_s.get("routine", 14400.0))


class CaseService:
    """Move cases through their life and keep everyone told."""

    def __init__(
        self,
        store: CaseStore,
        sessions: SessionStore,
        summarizer: CaseSummarizer,
        writer: ReplyWriter,
        options: CaseOptions | None = None,
    ) -> None:
        self.store, self.sessions = store, sessions
        self.summarizer, self.writer = summarizer, writer
        self.options = options or CaseOptions()
        self.events = CaseEvents()
        self.patients = PatientChannels()
        # Whether this process tells the doctors' group itself. A process without it (a web
        # worker with no Telegram) leaves a new case's first alert to the timers of one that
        # has, rather than count an alert nobody sent (bot/channels/telegram/app.py).
        self.announces = options is None or options.alert_unconfirmed_s is None
        self._idle_warned = False
        self._background: set[asyncio.Task[None]] = set()

    def announce_with(self, desk: Callable[[CaseEvent], Awaitable[None]]) -> None:
        """Tell the doctors' group from this process: `desk` hears every case event."""
        self.events.listen(desk)
        self.announces = True

    # --- opening --------------------------------------------------------------------------

    def opened_soon(self, case_id: int) -> None:
        """Announce a case from the engine without making the patient's reply wait."""
        task = asyncio.create_task(self.opened(case_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def opened(self, case_id: int, by_timers: bool = False) -> None:
        """Alert doctors at once, then write the summary (the alert is edited to show it).

        The first alert is counted, and marked unconfirmed until the doctors' group has it,
        before it is sent: whoever dies mid-send, the timers send it again.
        """
        try:
            view = await self.store.view(case_id)
            if view is None or view.status is not CaseStatus.OPEN:
                return
            if not (self.announces or by_timers):
                await self._publish("opened", view)  # this process's dashboards only
                return
            first = await self.store.first_alert(
                case_id, after(self.options.deadline(view.level)), self._unconfirmed()
            )
            if not first:  # already announced (the level may have risen): refresh only
                await self._publish("updated", view)
                return
            await self._publish("opened", view)
            await self.summarize(case_id)
        except StorageUnavailable as exc:
            logger.error("case %s: could not announce (%s)", case_id, exc)

    async def waiting_text(self, case_id: int, language: str) -> str:
        """Tell the patient their place in the queue and when to expect a doctor."""
        view = await self.store.view(case_id)
        if view is None or view.status is not CaseStatus.OPEN:
            return ""
        position = await self.store.position(case_id)
        minutes = max(1, round(self.options.deadline(view.level) / 60))
        return self.writer.text("doctor_waiting", language, position=position, minutes=minutes)

    async def summarize(self, case_id: int) -> None:
        """Write (or rewrite) the doctor's summary and publish it."""
        detail = await self.store.detail(case_id)
        if detail is None:
            return
        summary, source = await self.summarizer.summarize(
            detail.case, detail.transcript, detail.triage
        )
        await self.store.set_summary(case_id, summary, source)
        view = await self.store.view(case_id)
        if view is not None:
            await self._publish("summarized", view)

    # --- doctors --------------------------------------------------------------------------

    async def claim(self, case_id: int, actor: Actor) -> tuple[ClaimOutcome, CaseView | None]:
        """Give the case to one doctor and put the patient through to them."""
        outcome, view = await self.store.claim(case_id, actor)
        if outcome is ClaimOutcome.CLAIMED and view is not None:
            await self._publish("claimed", view, actor=actor.name)
            await self._tell(view, "doctor_joined", None, doctor=actor.shown)
        return outcome, view

    async def take_over(
        self, case_id: int, actor: Actor, reason: str
    ) -> tuple[ClaimOutcome, CaseView | None]:
        """Give a claimed case to `actor` instead of its doctor (audited, with the reason)."""
        outcome, view = await self.store.take_over(case_id, actor, reason)
        if outcome is ClaimOutcome.CLAIMED and view is not None:
            await self._publish("claimed", view, actor=actor.name)
            await self._tell(view, "doctor_joined", None, doctor=actor.shown)
        return outcome, view

    async def reply(self, case_id: int, actor: Actor, text: str) -> bool:
        """Relay a doctor's message to the patient; False unless the doctor holds the case."""
        view = await self.store.view(case_id)
        text = text.strip()
        if view is None or view.status is not CaseStatus.CLAIMED or not text:
            return False
        if not actor.holds(view):  # an admin too: take the case over first, saying why
            return False
        stored = await self.store.record_doctor_message(case_id, actor, text)
        with contextlib.suppress(MemoryUnavailable):
            await self.sessions.append(
                f"{view.channel}:{view.chat_id}",
                Turn(role="doctor", text=text, message_id=stored),
            )
        delivered = await self.patients.send(view.channel, view.chat_id, f"{actor.shown}: {text}")
        await self._publish("doctor", view, actor=actor.name, text=text)
        return delivered

    async def resolve(
        self, case_id: int, actor: Actor, outcome: str, disposition: str | None = None
    ) -> CaseView | None:
        """Close the case with an outcome note; the patient is back with CareBot."""
        current = await self.store.view(case_id)
        if current is None or current.status not in (CaseStatus.OPEN, CaseStatus.CLAIMED):
            return None
        # Only the doctor holding the case closes it: an open case is claimed first (so the
        # patient is told a doctor joined), another doctor's is taken over with a reason.
        if current.status is not CaseStatus.CLAIMED or not actor.holds(current):
            return None
        view = await self.store.close(
            case_id, CaseStatus.RESOLVED, actor.label, outcome or "resolved", disposition
        )
        if view is None:
            return None
        await self._publish("resolved", view, actor=actor.name)
        await self._tell(view, "doctor_left", None, doctor=actor.shown)
        return view

    async def alert_sending(self, case_id: int) -> None:
        """The doctors' desk begins sending a case's alert: the timers of any process leave
        it alone until it is confirmed, or the unconfirmed window has passed (its sender
        died)."""
        until = self._unconfirmed()
        if until is not None:
            await self.store.alert_sending(case_id, until)

    async def alert_failed(self, case_id: int, reason: str) -> None:
        """The doctors' group could not be told about a case: record it, retry, tell the patient.

        The patient hears it once (at the first failure): their case waits in the dashboard
        queue, but no one was pinged, so they should not count on a quick answer.
        """
        failures = await self.store.alert_failed(
            case_id, reason, timedelta(seconds=self.options.alert_retry_s)
        )
        logger.error(
            "case %s: doctors' alert not delivered (%s), try %d", case_id, reason, failures
        )
        view = await self.store.view(case_id)
        if view is None:
            return
        await self._publish("alert_failed", view, text=reason)
        if failures == 1 and view.status is CaseStatus.OPEN:
            await self._tell(view, "doctors_unreachable", None)

    async def alert_status(self, group_configured: bool) -> str:
        """Whether the doctors' group hears about every open case: "ok" or "failing: ..."."""
        if not group_configured:
            return "dashboard only (no doctors' group configured)"
        try:
            count, reason = await self.store.undelivered_alerts()
        except StorageUnavailable:
            return "unknown (database unavailable)"
        if count:
            return f"failing: {count} open cases not delivered to the doctors' group ({reason})"
        return "ok"

    async def patient_message(self, case_id: int, text: str, red_flags: list[str]) -> None:
        """Pass a patient's message to the doctor holding the case (and to the dashboard)."""
        view = await self.store.view(case_id)
        if view is not None:
            await self._publish("patient", view, text=text, red_flags=red_flags)

    async def forgotten(self, erased: Forgotten) -> None:
        """A patient was erased: their cases leave the queue, and the bot's messages about
        them in doctors' chats are blanked (by the doctors' side, listening)."""
        for case_id in erased.case_ids:
            await self.events.publish(
                CaseEvent(kind="forgotten", case_id=case_id, level="", status="forgotten")
            )
        if erased.doctor_messages:
            await self.events.publish(
                CaseEvent(
                    kind="erase_messages",
                    case_id=(erased.case_ids or [0])[0],  # 0: only closed cases' copies
                    level="",
                    status="forgotten",
                    messages=erased.doctor_messages,
                )
            )

    # --- deadlines ------------------------------------------------------------------------

    async def tick(self, now: datetime | None = None) -> None:
        """Re-alert unclaimed cases past their deadline; expire those alerted enough."""
        now = now or utcnow()
        if not self.announces:
            # Leading the timers without the doctors' desk (a CLI command that took the lock
            # while the server restarted): counting alerts nobody sends would expire cases
            # unseen. The deadlines wait for a process that can alert.
            if not self._idle_warned:
                logger.warning("case deadlines paused: this process cannot alert the doctors")
                self._idle_warned = True
            return
        self._idle_warned = False
        for case_id in await self.store.unannounced():  # opened by the CLI or another worker
            await self.opened(case_id, by_timers=True)
        # Refused by the doctors' group, or never confirmed (the sender died mid-send).
        for case_id in await self.store.alerts_to_retry(now):
            view = await self.store.view(case_id)
            if view is not None:
                await self._publish("alert_retry", view)
        for view, alerts in await self.store.due(now):
            if alerts >= self.options.alerts_before_expiry:
                closed = await self.store.close(
                    view.id, CaseStatus.EXPIRED, "carebot", "no doctor claimed the case in time"
                )
                if closed is not None:
                    await self._publish("expired", closed)
                    await self._tell(closed, f"case_expired_{closed.level.value}", None)
                continue
            await self.store.schedule(
                view.id,
                after(self.options.deadline(view.level), now),
                alerted=True,
                unconfirmed_at=self._unconfirmed(now),
            )
            await self._publish("realerted", view)
        metrics.CASES_PAST_DEADLINE.set(await self.store.past_first_deadline())

    async def run_deadlines(self) -> None:
        """Check deadlines every few seconds until cancelled."""
        while True:
            try:
                await self.tick()
            except StorageUnavailable as exc:
                logger.error("case deadlines: %s", exc)
            await asyncio.sleep(self.options.tick_s)

    async def aclose(self) -> None:
        """Let announcements under way finish."""
        if self._background:
            await asyncio.wait(list(self._background), timeout=10)

    # --- helpers --------------------------------------------------------------------------

    def _unconfirmed(self, now: datetime | None = None) -> datetime | None:
        """When an alert due now is sent again unless confirmed (None: nothing confirms)."""
        seconds = self.options.alert_unconfirmed_s
        return None if seconds is None else after(seconds, now)

    async def _publish(self, kind: str, view: CaseView, **extra: object) -> None:
        await self.events.publish(
            CaseEvent(
                kind=kind,
                case_id=view.id,
                level=view.level.value,
                status=view.status.value,
                **extra,
            )
        )

    async def _tell(self, view: CaseView, key: str, language: str | None, **values: object) -> None:
        if language is None:
            try:
                language = await self.store.language(view.id)
            except StorageUnavailable:
                language = None
            language = language or self.writer.options.default_language
        text = self.writer.text(key, language, **values)
        await self.patients.send(view.channel, view.chat_id, text)
