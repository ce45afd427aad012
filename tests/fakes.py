"""Fakes that implement CareBot's real interfaces (no mock.patch on internals)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from bot.llm.base import LLMBackend
from bot.memory.base import SessionStore, Turn
from bot.models import IncomingMessage
from bot.storage.repository import Storage, make_engine


class ScriptedChatModel(BaseChatModel):
    """A chat model that answers with a fixed script, instantly, and records its prompts."""

    answers: list[str]
    prompts: list[list[BaseMessage]] = []  # noqa: RUF012  (a pydantic field, copied per instance)
    fail_with: str | None = None

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _next(self, messages: list[BaseMessage]) -> str:
        self.prompts.append(messages)
        if self.fail_with:
            raise ConnectionError(self.fail_with)
        return self.answers[(len(self.prompts) - 1) % len(self.answers)]

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self._next(messages)))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for word in self._next(messages).split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))


def scripted(*answers: str, fail_with: str | None = None) -> LLMBackend:
    """Return an LLM backend that answers from `answers` in turn (or always fails)."""
    return LLMBackend(
        ScriptedChatModel(answers=list(answers) or ["ok"], prompts=[], fail_with=fail_with)
    )


class SlowChatModel(BaseChatModel):
    """A chat model that takes `delay_s` per answer and records how many ran at once."""

    delay_s: float = 0.05
    active: int = 0
    peak: int = 0
    seen: list[str] = []  # noqa: RUF012  (a pydantic field, copied per instance)

    @property
    def _llm_type(self) -> str:
        return "slow"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise NotImplementedError("async only")

    async def _astream(  # type: ignore[override]
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> Any:
        import asyncio

        self.active += 1
        self.peak = max(self.peak, self.active)
        self.seen.append(str(messages[-1].content))
        await asyncio.sleep(self.delay_s)
        self.active -= 1
        yield ChatGenerationChunk(message=AIMessageChunk(content="ok"))


class BrokenSessionStore(SessionStore):
    """A session store with a bug: every call raises an unexpected error."""

    def __init__(self) -> None:
        super().__init__(ttl_s=60, max_turns=10)

    async def append(self, chat_key: str, *turns: Turn) -> None:
        raise ValueError("bug in the store")

    async def history(self, chat_key: str, limit: int | None = None) -> list[Turn]:
        raise ValueError("bug in the store")

    async def forget(self, chat_key: str) -> None:
        raise ValueError("bug in the store")

    async def ping(self) -> None:
        raise ValueError("bug in the store")


def patient_message(
    text: str, chat: str, consent: bool = True, language: str | None = None
) -> IncomingMessage:
    """A patient's message in a chat of its own (a fresh message id each time)."""
    return IncomingMessage(
        channel="test",
        chat_id=chat,
        user_id=f"user-{chat}",
        message_id=uuid.uuid4().hex,
        text=text,
        consent=consent,
        language=language,
    )


@contextlib.contextmanager
def locked_database(storage: Storage, db: Path) -> Iterator[None]:
    """Hold the SQLite file in an exclusive transaction (another process writing, a stuck
    backup); the storage waits at most 0.2 s for it, then reports the database unavailable.
    """
    storage.engine.dispose()
    locker = sqlite3.connect(db, timeout=0)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        storage.engine = make_engine(f"sqlite:///{db}", busy_timeout_s=0.2)
        yield
    finally:
        locker.rollback()
        locker.close()


@contextlib.contextmanager
def database_locked_for(db: Path, seconds: float) -> Iterator[None]:
    """Another process holds the write lock for `seconds`, then lets go (a backup, a CLI)."""
    locked = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(db, timeout=0)
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(seconds)
        conn.rollback()
        conn.close()

    holder = threading.Thread(target=hold)
    holder.start()
    locked.wait(5)
    try:
        yield
    finally:
        holder.join()
