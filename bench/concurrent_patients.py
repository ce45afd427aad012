"""Many patients at once on the embedded defaults, and an emergency every few seconds.

Twenty patients (each a new chat, consent given) ask guideline questions at the same moment;
the packaged SmolLM2 writes one answer at a time (`CAREBOT_LLM_QUEUE_LIMIT` more wait, the
rest get the passages quoted at once). Meanwhile a 21st chat writes an emergency every few
seconds. Measured: each emergency's reply time, each answer's completion time, and how the
answers were made (by the model, or quoted because the model was busy or failed).
Engine level (no channel): python -m bench.concurrent_patients [-n 20] [--json]
Over the web channel (`carebot serve`'s app under uvicorn, each patient a browser-like client
with its own chat cookie, replies streamed over HTTP): add --web.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bench.common import machine, report, summary
from bot.channels.web import create_web_app
from bot.config import Settings, load_settings
from bot.llm.factory import build_llm
from bot.models import IncomingMessage, TriageLevel
from bot.runtime import Runtime, build_runtime
from tests.servers import free_port

QUESTIONS = [
    "how long does a cold usually last?",
    "what helps a sore throat?",
    "can I take paracetamol for a fever?",
    "how do I know if a cut needs stitches?",
    "what should I eat with diarrhoea?",
    "is it ok to exercise with a cold?",
    "what helps hay fever?",
    "how do I treat a minor burn?",
    "what can I do about indigestion?",
    "how do I look after a sprained ankle?",
]
EMERGENCIES = [
    "my father collapsed and is not breathing",
    "crushing chest pain and sweating for 20 minutes",
    "my wife's face is drooping on one side and her speech is slurred",
]


def message(text: str, chat: str) -> IncomingMessage:
    return IncomingMessage(
        channel="bench",
        chat_id=chat,
        user_id=chat,
        message_id=uuid.uuid4().hex,
        text=text,
        consent=True,
    )


async def run(patients: int, every_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp), triage_followup_rounds=0)
        runtime = await build_runtime(settings, llm=build_llm(settings))
        await runtime.llm.warm_up()
        engine = runtime.engine
        answer_ms: list[float] = []
        made: dict[str, int] = {}

        async def patient(n: int) -> None:
            started = time.perf_counter()
            reply = await engine.handle(message(QUESTIONS[n % len(QUESTIONS)], f"patient-{n}"))
            answer_ms.append((time.perf_counter() - started) * 1000)
            # "embedded: busy" (line full), "embedded: timeout", or None (the model answered,
            # its draft shown or, failing the groundedness check, the passages quoted).
            how = reply.llm_error or "model"
            made[how] = made.get(how, 0) + 1

        asking = [asyncio.create_task(patient(n)) for n in range(patients)]
        emergency_ms: list[float] = []
        round_ = 0
        while not all(task.done() for task in asking):
            await asyncio.sleep(every_s)
            started = time.perf_counter()
            text = EMERGENCIES[round_ % len(EMERGENCIES)]
            reply = await engine.handle(message(text, f"emergency-{round_}"))
            emergency_ms.append((time.perf_counter() - started) * 1000)
            if reply.level is not TriageLevel.EMERGENCY:
                raise RuntimeError(f"not answered as an emergency: {text!r}")
            round_ += 1
        await asyncio.gather(*asking)
        await runtime.aclose()
    return {
        "machine": machine(),
        "patients": patients,
        "queue_limit": settings.llm_queue_limit,
        "emergency_reply_ms": summary(emergency_ms),
        "answer_completion_ms": summary(answer_ms),
        "answers_made_by": made,
    }


class _WebApp:
    """The web app under uvicorn in a thread of its own (its own event loop), on loopback."""

    def __init__(self, settings: Settings) -> None:
        self.settings, self.port = settings, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def _start(self) -> Runtime:
        runtime = await build_runtime(self.settings, llm=build_llm(self.settings))
        await runtime.llm.warm_up()
        return runtime

    def _run(self) -> None:
        app = create_web_app(self._start)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        asyncio.run(self.server.serve())

    def __enter__(self) -> _WebApp:
        self.thread.start()
        deadline = time.monotonic() + 300
        while not (self.server is not None and self.server.started):
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the web app did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.should_exit = True
        self.thread.join(30)


async def _post(url: str, text: str) -> dict[str, Any]:
    """One patient's browser: a new chat cookie, one message, the streamed reply's last line."""
    async with httpx.AsyncClient(base_url=url, timeout=600) as web:
        body = {"message_id": uuid.uuid4().hex, "text": text, "consent": True}
        async with web.stream("POST", "/api/messages", json=body) as res:
            lines = [json.loads(line) async for line in res.aiter_lines() if line]
    return dict(lines[-1])


async def run_web(patients: int, every_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            data_dir=Path(tmp), triage_followup_rounds=0, web_address_messages_per_minute=10_000
        )
        with _WebApp(settings) as app:
            answer_ms: list[float] = []
            made: dict[str, int] = {}

            async def patient(n: int) -> None:
                started = time.perf_counter()
                reply = await _post(app.url, QUESTIONS[n % len(QUESTIONS)])
                answer_ms.append((time.perf_counter() - started) * 1000)
                how = "quoted: busy" if "Many people" in reply["text"] else "model or quoted"
                made[how] = made.get(how, 0) + 1

            asking = [asyncio.create_task(patient(n)) for n in range(patients)]
            emergency_ms: list[float] = []
            round_ = 0
            while not all(task.done() for task in asking):
                await asyncio.sleep(every_s)
                started = time.perf_counter()
                text = EMERGENCIES[round_ % len(EMERGENCIES)]
                reply = await _post(app.url, text)
                emergency_ms.append((time.perf_counter() - started) * 1000)
                if reply["level"] != TriageLevel.EMERGENCY.value:
                    raise RuntimeError(f"not answered as an emergency: {text!r}")
                round_ += 1
            await asyncio.gather(*asking)
    return {
        "machine": machine(),
        "channel": "web (HTTP, streamed)",
        "patients": patients,
        "queue_limit": settings.llm_queue_limit,
        "emergency_reply_ms": summary(emergency_ms),
        "answer_completion_ms": summary(answer_ms),
        "answers_made_by": made,
    }


def main() -> None:
    """Print the figures (or JSON with --json)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20, help="patients asking at once")
    parser.add_argument("--every", type=float, default=3.0, help="seconds between emergencies")
    parser.add_argument("--web", action="store_true", help="through the web channel over HTTP")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runner = run_web if args.web else run
    report(asyncio.run(runner(args.n, args.every)), args.json)


if __name__ == "__main__":
    main()
