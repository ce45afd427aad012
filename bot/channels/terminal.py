"""`carebot chat`: a terminal chat that also works piped (one message per line)."""

from __future__ import annotations

import asyncio
import getpass
import uuid
from typing import BinaryIO, TextIO

from bot.engine import ConversationEngine
from bot.models import IncomingMessage


def decode_line(raw: bytes) -> str:
    """Decode one input line; invalid UTF-8 becomes U+FFFD rather than an error."""
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


async def run_terminal_chat(
    engine: ConversationEngine,
    stdin: BinaryIO,
    stdout: TextIO,
    *,
    consent: bool = False,
    interactive: bool = False,
    chat_id: str | None = None,
) -> int:
    """Answer each input line until end of input; return how many messages were handled."""
    user = getpass.getuser()
    chat = chat_id or f"{user}-{uuid.uuid4().hex[:8]}"
    handled = 0
    while True:
        if interactive:
            stdout.write("you> ")
            stdout.flush()
        raw = await asyncio.to_thread(stdin.readline)
        if not raw:
            break
        msg = IncomingMessage(
            channel="terminal",
            chat_id=chat,
            user_id=user,
            message_id=uuid.uuid4().hex,
            text=decode_line(raw),
            consent=consent,
        )
        reply = await engine.handle(msg)
        prefix = "carebot> " if interactive else ""
        stdout.write(f"{prefix}{reply.text}\n\n")
        stdout.flush()
        handled += 1
    return handled
