"""Embedded LLM speed: tokens per second and time to first token, SmolLM2-135M on this CPU.

Run: python -m bench.llm_speed [--runs 5] [--tokens 128] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from langchain_core.messages import HumanMessage, SystemMessage

from bench.common import machine, table
from bot.config import load_settings
from bot.llm.embedded import ChatLlamaCpp, packaged_model_path

PROMPT = [
    SystemMessage("You are a careful health information assistant."),
    HumanMessage("Explain in a few sentences how to look after yourself when you have a cold."),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    settings = load_settings()
    model = ChatLlamaCpp(
        model_path=settings.llm_model_path or packaged_model_path(),
        n_threads=settings.llm_threads,
        n_ctx=settings.llm_context,
        max_tokens=args.tokens,
        temperature=0.0,
    )
    start = time.perf_counter()
    model.load()
    load_s = time.perf_counter() - start
    model.invoke(PROMPT, max_tokens=8)  # warm-up

    rates, first_token_ms = [], []
    for _ in range(args.runs):
        start = time.perf_counter()
        result = model._generate(list(PROMPT), max_tokens=args.tokens)
        elapsed = time.perf_counter() - start
        usage = (result.llm_output or {}).get("token_usage", {})
        rates.append(usage.get("completion_tokens", 0) / elapsed)
        start = time.perf_counter()
        for _chunk in model.stream(PROMPT, max_tokens=args.tokens):
            first_token_ms.append((time.perf_counter() - start) * 1000)
            break
    result_row = {
        "load_s": load_s,
        "tokens_per_s_median": statistics.median(rates),
        "tokens_per_s_min": min(rates),
        "first_token_ms_median": statistics.median(first_token_ms),
        "threads": settings.llm_threads,
    }
    if args.json:
        print(json.dumps({"machine": machine(), **result_row}))
        return
    print(
        f"Embedded LLM (SmolLM2-135M-Instruct Q4_1, llama.cpp, {settings.llm_threads} threads),"
        f" {machine()}"
    )
    print(
        table(
            ["model load s", "tokens/s (median)", "tokens/s (min)", "first token ms (median)"],
            [
                [
                    f"{load_s:.2f}",
                    f"{result_row['tokens_per_s_median']:.1f}",
                    f"{result_row['tokens_per_s_min']:.1f}",
                    f"{result_row['first_token_ms_median']:.0f}",
                ]
            ],
        )
    )


if __name__ == "__main__":
    main()
