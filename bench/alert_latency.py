"""Emergency to doctors' alert: how long from a patient's message to the alert in the group.

Each round a new patient writes an emergency to the Bot API test server; CareBot polls it
(python-telegram-bot over HTTP), answers the patient, opens the case and posts the alert to
the doctors' group. Measured: update queued -> the alert's sendMessage received by the
server, with an instant scripted LLM (the alert never waits for the summary). Rounds run one
after another, so each figure is one patient's latency on an otherwise idle CareBot.
Run: python -m bench.alert_latency [-n 100] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import machine, summary
from bench.engine_overhead import instant_llm
from bench.telegram_load import TimedBotAPIServer
from bot.channels.telegram import start_telegram
from bot.config import load_settings
from bot.runtime import build_runtime
from tests.bot_api import private_message

DOCTORS = -1001
MESSAGE = "crushing chest pain and sweating for 20 minutes"


async def run(rounds: int) -> dict[str, Any]:
    api = TimedBotAPIServer()
    alerts_ms, replies_ms = [], []
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            data_dir=Path(tmp),
            telegram_bot_token="1:BENCH",
            telegram_api_base_url=api.base_url,
            doctors_chat_id=DOCTORS,
            # The test server has no flood limit; Telegram's own (about 20 group messages a
            # minute, alerts and their summary edits alike) is a separate constraint.
            telegram_group_messages_per_minute=600,
        )
        runtime = await build_runtime(settings, llm=instant_llm())
        await start_telegram(runtime)
        await asyncio.sleep(0.5)
        for patient in range(1, rounds + 1):
            seen = {k for k in api.created_at if k[0] == DOCTORS}
            queued = time.perf_counter()
            api.send_update(private_message(1, patient, text=MESSAGE))

            def alerted(seen: set[tuple[int, int]] = seen, patient: int = patient) -> bool:
                keys = list(api.created_at)
                return any(k[0] == DOCTORS and k not in seen for k in keys) and any(
                    k[0] == patient for k in keys
                )

            if not await api.await_for(alerted, 30):
                raise RuntimeError(f"no alert for patient {patient}")
            alert = min(
                v for k, v in list(api.created_at.items()) if k[0] == DOCTORS and k not in seen
            )
            reply = min(v for k, v in list(api.created_at.items()) if k[0] == patient)
            alerts_ms.append((alert - queued) * 1000)
            replies_ms.append((reply - queued) * 1000)
            await asyncio.sleep(0.05)  # let the summary edit finish before the next round
        await runtime.aclose()
    api.stop()
    return {
        "emergency reply to patient": summary(replies_ms),
        "alert in doctors' group": summary(alerts_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=100, help="emergencies, one patient each")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.n))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"machine: {machine()}")
    print("| what | n | p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---|---|---|---|")
    for what, s in result.items():
        cells = [str(s["n"])] + [f"{s[k]:.0f}" for k in ("p50", "p95", "p99", "max")]
        print(f"| {what} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
