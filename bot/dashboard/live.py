"""Live updates for the dashboard as Server-Sent Events.

The queue's stream says only that a case changed (id, level, status): no patient text. The
case page's stream also carries the messages of that one case, for its transcript.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from bot.cases.events import CaseEvent, CaseEvents

MESSAGE_KINDS = ("patient", "doctor")  # events that carry text; the queue does not show them


def _sse(event: CaseEvent, with_text: bool) -> str:
    data: dict[str, object] = {
        "kind": event.kind,
        "case_id": event.case_id,
        "level": event.level,
        "status": event.status,
        "at": event.at,
    }
    if with_text:
        data.update(actor=event.actor, text=event.text)
    return f"event: case\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def stream(
    events: CaseEvents,
    still_signed_in: Callable[[], Awaitable[bool]],
    heartbeat_s: float,
    case_id: int | None = None,
) -> AsyncIterator[str]:
    """Yield case events as SSE: every case without text, or one case with its messages.

    A comment every `heartbeat_s` keeps proxies from closing the stream. The sign-in is
    checked on a clock, every `heartbeat_s` whether or not events flow (on a busy system a
    stream checked only when idle never ended after its doctor signed out), and before
    anything is sent after that long.
    """
    async with events.stream() as queue:
        # Subscribed from here on: the page reloads what it shows on "ready", so nothing
        # that happened between rendering it and opening the stream is missed.
        yield "retry: 3000\nevent: ready\ndata: {}\n\n"
        checked = time.monotonic()
        while True:
            try:
                event: CaseEvent | None = await asyncio.wait_for(queue.get(), heartbeat_s)
            except TimeoutError:
                event = None
            if time.monotonic() - checked >= heartbeat_s:
                if not await still_signed_in():
                    return
                checked = time.monotonic()
            if event is None:
                yield ": heartbeat\n\n"
                continue
            if case_id is None and event.kind not in MESSAGE_KINDS:
                yield _sse(event, with_text=False)
            elif case_id is not None and event.case_id == case_id:
                yield _sse(event, with_text=True)
