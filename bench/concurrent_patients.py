"""Many patients at once on the embedded defaults, and an emergency every few seconds.

Twenty patients (each a new chat, consent given) ask guideline questions at the same moment;
the packaged SmolLM2 writes one answer at a time (`CAREBOT_LLM_QUEUE_LIMIT` more wait, the
rest get the passages quoted at once). Meanwhile a 21st chat writes an emergency every few
seconds. Measured: each emergency's reply time, each answer's completion time, and how the
answers were made (by the model, or quoted because the model was busy or failed).
Engine level (no channel): python -m bench.concurrent_patients [-n 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import machine, report, summary
from bot.config import load_settings
from bot.llm.factory import build_llm
from bot.models import IncomingMessage, TriageLevel
from bot.runtime import build_runtime

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


def main() -> None:
    """Print the figures (or JSON with --json)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20, help="patients asking at once")
    parser.add_argument("--every", type=float, default=3.0, help="seconds between emergencies")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report(asyncio.run(run(args.n, args.every)), args.json)


if __name__ == "__main__":
    main()
