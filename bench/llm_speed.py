"""Embedded LLM speed: start-up, tokens per second, time to first token and memory of the
model process (SmolLM2-135M on PyTorch's CPU build), on this CPU.

Run: python -m bench.llm_speed [--runs 5] [--tokens 128] [--precision fp32|int8] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from langchain_core.messages import HumanMessage, SystemMessage

from bench.common import machine, table
from bot.config import load_settings
from bot.llm.embedded import EmbeddedBackend
from bot.llm.factory import build_llm

PROMPT = [
    SystemMessage("You are a careful health information assistant."),
    HumanMessage("Explain in a few sentences how to look after yourself when you have a cold."),
]


def _memory_mb(pid: int | None, field: str) -> float:
    """The model process's resident memory (VmRSS now, VmHWM at its peak), in MB."""
    if pid is None:
        return 0.0
    for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


async def measure(runs: int, tokens: int, precision: str) -> dict[str, object]:
    """Start the model process, then time `runs` greedy answers of up to `tokens` tokens."""
    settings = load_settings(llm_precision=precision, llm_max_tokens=tokens, llm_temperature=0.0)
    llm = build_llm(settings)
    assert isinstance(llm, EmbeddedBackend)
    try:
        start = time.perf_counter()
        await llm.warm_up()
        start_s = time.perf_counter() - start
        ready = llm.process.ready
        assert ready is not None
        rates, first_token_ms = [], []
        for _ in range(runs):
            before = llm.process.tokens_out
            start = time.perf_counter()
            first = None
            async for _piece in llm.stream(PROMPT):
                first = first or time.perf_counter()
            assert first is not None
            first_token_ms.append((first - start) * 1000)
            # Tokens after the first, over the time after it: writing speed, not prefill.
            rates.append((llm.process.tokens_out - before - 1) / (time.perf_counter() - first))
        return {
            "precision": ready.precision,
            "cpu_kernels": ready.cpu_capability,
            "process_start_s": round(start_s, 2),
            "load_s": ready.load_s,
            "tokens_per_s_median": round(statistics.median(rates), 1),
            "tokens_per_s_min": round(min(rates), 1),
            "first_token_ms_median": round(statistics.median(first_token_ms)),
            "memory_mb": round(_memory_mb(llm.process.pid, "VmRSS")),
            "peak_memory_mb": round(_memory_mb(llm.process.pid, "VmHWM")),
            "threads": settings.llm_threads,
        }
    finally:
        await llm.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    row = asyncio.run(measure(args.runs, args.tokens, args.precision))
    if args.json:
        print(json.dumps({"machine": machine(), **row}))
        return
    print(
        f"Embedded LLM (SmolLM2-135M-Instruct, PyTorch CPU, model process, "
        f"{row['threads']} threads), {machine()}"
    )
    print(
        table(
            [
                "precision",
                "CPU kernels",
                "process start s",
                "tokens/s (median)",
                "tokens/s (min)",
                "first token ms (median)",
                "memory MB (peak)",
            ],
            [
                [
                    str(row["precision"]),
                    str(row["cpu_kernels"]),
                    f"{row['process_start_s']}",
                    f"{row['tokens_per_s_median']}",
                    f"{row['tokens_per_s_min']}",
                    f"{row['first_token_ms_median']}",
                    f"{row['memory_mb']} ({row['peak_memory_mb']})",
                ]
            ],
        )
    )


if __name__ == "__main__":
    main()
