"""The model process: `python -m bot.llm.worker`, spoken to over stdin and stdout.

Protocol lines go out on a private copy of stdout; file descriptor 1 itself is pointed at
stderr first, so nothing a library prints (Python or native) can corrupt the protocol.
It never logs or echoes a prompt: a failure is reported by the kind of exception only.
"""

from __future__ import annotations

import faulthandler
import os
import queue
import sys
import threading
from typing import IO

from pydantic import ValidationError

from bot.llm.worker.protocol import (
    TO_CHILD,
    Broken,
    Cancel,
    Done,
    Failed,
    Generate,
    Ready,
    Start,
    Token,
    encode,
)


class Channel:
    """The child's end: requests read on a thread (so a cancel arrives mid-answer)."""

    def __init__(self) -> None:
        self.out: IO[bytes] = os.fdopen(os.dup(1), "wb", buffering=0)
        os.dup2(2, 1)
        self.requests: queue.Queue[Start | Generate | None] = queue.Queue()
        self.cancelled: set[int] = set()
        threading.Thread(target=self._read, name="requests", daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin.buffer:
            try:
                message = TO_CHILD.validate_json(line)
            except ValidationError:
                continue  # a line CareBot never writes; nothing to answer
            if isinstance(message, Cancel):
                self.cancelled.add(message.id)
            else:
                self.requests.put(message)
        self.requests.put(None)  # CareBot closed the pipe: exit

    def send(self, message: Token | Done | Failed | Ready | Broken) -> None:
        self.out.write(encode(message))


def main() -> None:
    """Load the model, prove it writes, then answer requests until stdin closes."""
    faulthandler.enable()  # a native crash leaves its stack on stderr, then the signal kills
    channel = Channel()
    start = channel.requests.get()
    if not isinstance(start, Start):
        return
    from bot.llm.worker.model import LocalModel

    try:
        model = LocalModel(start)
        speed = model.self_test()
    except Exception as exc:  # reported by kind: the model cannot be used as configured
        channel.send(Broken(reason=f"{type(exc).__name__}: {str(exc)[:200]}"))
        return
    channel.send(
        Ready(
            precision=model.precision,
            cpu_capability=model.cpu_capability,
            load_s=round(model.load_s, 2),
            tokens_per_s=round(speed, 1),
        )
    )
    while (request := channel.requests.get()) is not None:
        if not isinstance(request, Generate):
            continue
        count = 0
        try:
            for piece in model.tokens(request, lambda: request.id in channel.cancelled):
                count += 1
                channel.send(Token(id=request.id, text=piece))
        except Exception as exc:  # this answer fails; the model stays loaded for the next
            channel.send(Failed(id=request.id, reason=type(exc).__name__))
        else:
            channel.send(Done(id=request.id, tokens=count))
        channel.cancelled.discard(request.id)


if __name__ == "__main__":
    main()
