"""Telegram under load: many chats writing at once through a Bot API server on loopback.

200 chats x 5 messages are queued at once on the test Bot API server (tests/bot_api.py);
CareBot polls them with python-telegram-bot's own HTTP code, answers through the whole
engine with an instant scripted LLM, and sends (and streams) its replies back. Checked:
every message answered exactly once (by the reply it quotes), each chat's replies in the
order of its messages. Measured: throughput, and latency from the update being queued to
its final reply text arriving (this includes waiting behind the same chat's earlier
messages). Run: python -m bench.telegram_load [--chats 200] [--messages 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import report, summary
from bench.engine_overhead import instant_llm
from bot.channels.telegram import start_telegram
from bot.config import load_settings
from bot.runtime import build_runtime
from tests.bot_api import BotAPIServer, private_message

SCRIPT = [
    "yes",
    "I have had a sore throat since yesterday",
    "It is mild and I am 34",
    "What can I do to feel better?",
    "Thank you",
]


class TimedBotAPIServer(BotAPIServer):
    """The test server, noting when each bot message last changed and what it replies to."""

    def __init__(self) -> None:
        super().__init__()
        self.queued_at: dict[tuple[int, int], float] = {}
        self.reply_of: dict[tuple[int, int], int] = {}  # bot message -> patient message
        self.final_at: dict[tuple[int, int], float] = {}
        self.created_at: dict[tuple[int, int], float] = {}  # bot message -> first sent

    def _dispatch(self, method: str, params: dict[str, Any]) -> tuple[int, bytes] | None:
        answer = super()._dispatch(method, params)
        if answer is None or answer[0] != 200:
            return answer
        now = time.perf_counter()
        result = json.loads(answer[1]).get("result")
        if method.lower() in ("sendmessage", "editmessagetext") and isinstance(result, dict):
            key = (int(result["chat"]["id"]), int(result["message_id"]))
            with self._cond:
                self.final_at[key] = now
                self.created_at.setdefault(key, now)
                quoted = (result.get("reply_to_message") or {}).get("message_id")
                if quoted is not None:
                    self.reply_of.setdefault(key, int(quoted))
        return answer


def check(api: TimedBotAPIServer, chats: int, messages: int) -> dict[str, Any]:
    """Count lost and duplicated replies and out-of-order chats; time each final reply."""
    replies: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for (chat, bot_id), patient_id in api.reply_of.items():
        replies.setdefault((chat, patient_id), []).append((chat, bot_id))
    expected = [(c, m) for c in range(1, chats + 1) for m in range(1, messages + 1)]
    lost = [k for k in expected if k not in replies]
    duplicated = [k for k in expected if len(replies.get(k, [])) > 1]
    out_of_order = 0
    for chat in range(1, chats + 1):
        order = [api.reply_of[k] for k in sorted(k for k in api.reply_of if k[0] == chat)]
        out_of_order += order != sorted(order)
    latencies = [
        (api.final_at[replies[k][0]] - api.queued_at[k]) * 1000 for k in expected if k in replies
    ]
    return {
        "lost": len(lost),
        "duplicated": len(duplicated),
        "chats_out_of_order": out_of_order,
        "latency_ms": summary(latencies) if latencies else {},
    }


async def run(chats: int, messages: int, timeout_s: float) -> dict[str, Any]:
    api = TimedBotAPIServer()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            data_dir=Path(tmp),
            telegram_bot_token="1:BENCH",
            telegram_api_base_url=api.base_url,
        )
        runtime = await build_runtime(settings, llm=instant_llm())
        await start_telegram(runtime)
        await asyncio.sleep(0.5)  # polling has started
        started = time.perf_counter()
        for m, text in enumerate(SCRIPT[:messages], start=1):  # interleaved, as at a peak
            for chat in range(1, chats + 1):
                api.queued_at[(chat, m)] = time.perf_counter()
                api.send_update(private_message(m, chat, text=text))
        total = chats * messages

        def answered() -> bool:
            replied = {(chat, patient) for (chat, _), patient in list(api.reply_of.items())}
            return len(replied) >= total

        def no_drafts() -> bool:  # a streamed draft ends in "…" until its final edit
            return not any(t.endswith("…") for c in range(1, chats + 1) for t in api.texts(c))

        await api.await_for(answered, timeout_s)
        await api.await_for(no_drafts, 60)
        elapsed = max(api.final_at.values()) - started if api.final_at else float("nan")
        await runtime.aclose()
    api.stop()
    result = check(api, chats, messages)
    result.update(
        {
            "chats": chats,
            "messages": total,
            "seconds": round(elapsed, 2),
            "messages_per_s": round(total / elapsed, 1),
        }
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--messages", type=int, default=5, choices=range(1, len(SCRIPT) + 1))
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after (s)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.chats, args.messages, args.timeout))
    report(result, args.json)


if __name__ == "__main__":
    main()
