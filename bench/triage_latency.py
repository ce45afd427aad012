"""Triage latency: the rules alone (per message, by length) and full triage with the LLM.

Messages are written for this benchmark (no evaluation data). Rule latency counts fact
extraction, spelling correction, negation and every rule; full triage adds the configured
LLM classifier (the embedded SmolLM2 by default). Run: python -m bench.triage_latency [--json]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from bench.common import machine, summary
from bot.config import load_settings
from bot.llm.factory import build_llm
from bot.prompts import PromptLibrary
from bot.runtime import build_triage
from bot.triage.rules import TriageRules
from bot.triage.service import ModelVote

SHORT = [
    "I have a sore throat",
    "my baby has a fever",
    "cant breathe properly",
    "胸口痛，出冷汗",
    "burning when I pee",
    "back pain after lifting",
]
MEDIUM = [
    "I'm 34 and I've had a cough and a runny nose for about five days. No fever, no chest "
    "pain, breathing is fine, but I feel tired and my throat is scratchy in the mornings.",
    "My 3 year old has had a temperature of 38.6 since this morning. She is drinking but "
    "not eating much and seems a bit more sleepy than usual. No rash that I can see.",
    "I twisted my ankle playing football yesterday. It is swollen and bruised and it hurts "
    "to walk on it but I can put some weight on it. Should I get an x-ray?",
]
HISTORY = [
    "hello",
    "I have had headaches for a week",
    "they are worse in the morning",
    "paracetamol helps a little",
    "I am 52",
    "no vision problems",
    "sometimes I feel sick",
    "today I also feel dizzy",
] * 3


def rules_us(rules: TriageRules, texts: list[list[str]], rounds: int) -> dict[str, float]:
    """Time `rules.check` over each conversation, `rounds` times; microseconds."""
    times = []
    for _ in range(rounds):
        for conversation in texts:
            start = time.perf_counter()
            rules.check(conversation)
            times.append((time.perf_counter() - start) * 1e6)
    return summary(times)


async def full_ms(n: int) -> dict[str, float]:
    """Time full triage (rules + embedded classifier) on short and medium messages."""
    settings = load_settings()
    llm = build_llm(settings)
    await llm.warm_up()
    service = build_triage(settings, llm, PromptLibrary(settings.prompts_dir), ModelVote.ADVISE)
    messages = [m for m in SHORT + MEDIUM if "cant breathe" not in m and "胸口" not in m]
    times = []
    try:
        for i in range(n):
            start = time.perf_counter()
            await service.assess([messages[i % len(messages)]])
            times.append((time.perf_counter() - start) * 1000)
    finally:
        await llm.aclose()
    return summary(times)


def main() -> None:
    """Print the rule and full-triage latency tables (or JSON with --json)."""
    rules = TriageRules()
    results = {
        "rules_short_us": rules_us(rules, [[m] for m in SHORT], 500),
        "rules_medium_us": rules_us(rules, [[m] for m in MEDIUM], 500),
        "rules_history_24_messages_us": rules_us(rules, [HISTORY], 200),
        "full_triage_ms": asyncio.run(full_ms(20)),
    }
    if "--json" in sys.argv:
        print(json.dumps({"machine": machine(), **results}))
        return
    print(f"Triage latency on {machine()}")
    print(f"{'what':<32}{'n':>6}{'p50':>10}{'p95':>10}{'p99':>10}")
    for name, s in results.items():
        print(f"{name:<32}{s['n']:>6.0f}{s['p50']:>10.1f}{s['p95']:>10.1f}{s['p99']:>10.1f}")


if __name__ == "__main__":
    main()
