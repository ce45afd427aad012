"""The emergency instruction sent ahead of a turn that is slow to start.

A message is stored and then waits for its chat's turn before the rules read it in context.
Either wait can be long: the database locked by another process, a flood on the storage
thread, or the same patient's previous question still being answered by the model. An
emergency must not wait for any of that. So each patient text message gets an `EarlyWarning`
when it arrives: if its turn has not started within `after_s`, the red-flag rules read the
message alone and, on an emergency, the channel sends the instruction at once.

When the turn does start it *settles* the warning (the timer is stopped, or a warning being
sent is waited for): red flags already announced this way are recorded as announced, the case
is still opened for doctors, and the turn's reply carries the warning as `shown`, so the
channel sends only what follows it. A warning can repeat an instruction the chat had before
(the early check cannot read the chat's state while the database is slow): said twice beats
said late.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from enum import Enum

from bot.models import IncomingMessage, Reply, TriageLevel, Warned
from bot.replies import ReplyWriter, clean_text, detect_language
from bot.triage.service import TriageService

logger = logging.getLogger(__name__)
Send = Callable[[Reply], Awaitable[object]]


class _Stage(Enum):
    WAITING = "waiting"
    SENDING = "sending"
    DONE = "done"


class EarlyWarning:
    """One message's early emergency check; start it on arrival, settle it when its turn starts."""

    def __init__(
        self,
        msg: IncomingMessage,
        send: Send,
        triage: TriageService,
        writer: ReplyWriter,
        after_s: float,
        default_language: str = "en",
    ) -> None:
        self.msg, self.send, self.after_s = msg, send, after_s
        self.triage, self.writer, self.default_language = triage, writer, default_language
        self.warned: Warned | None = None
        self._stage = _Stage.WAITING
        self._task: asyncio.Task[None] | None = None
        self._sent = asyncio.Event()

    def start(self) -> EarlyWarning:
        """Start the clock (inside a running event loop)."""
        if self._task is None and self.msg.text.strip():
            self._task = asyncio.create_task(self._watch(), name="early-warning")
        return self

    async def settle(self) -> Warned | None:
        """The turn has started: stop the clock; return what was already sent, if anything."""
        if self._stage is _Stage.WAITING:
            self._stage = _Stage.DONE
            if self._task is not None:
                self._task.cancel()
        elif self._stage is _Stage.SENDING:
            await self._sent.wait()
        return self.warned

    async def _watch(self) -> None:
        await asyncio.sleep(self.after_s)
        if self._stage is not _Stage.WAITING:
            return
        self._stage = _Stage.SENDING
        try:
            await self._warn()
        except Exception as exc:  # the turn itself still answers; this was only a head start
            logger.error("early warning failed (%s)", type(exc).__name__)
        finally:
            self._stage = _Stage.DONE
            self._sent.set()

    async def _warn(self) -> None:
        text = clean_text(self.msg.text)
        language = detect_language(text, self.msg.language or self.default_language)
        decision = await self.triage.adecide([text], language, ask=False)
        if decision.rule_level is not TriageLevel.EMERGENCY:
            return
        reply = self.writer.emergency(decision.hits, language)
        await self.send(reply)
        emergencies = self.writer.rules.emergencies(decision.hits) or decision.hits
        self.warned = Warned(flags=[h.rule_id for h in emergencies], text=reply.text)
        logger.warning("emergency instruction sent ahead of a slow turn (%s)", self.msg.channel)
