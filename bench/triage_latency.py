"""Triage latency: one decision (rules, lexicon, ConText, meaning, interview) by input size.

Messages are written for this benchmark (no evaluation data). A decision covers fact
extraction, spelling correction, the lexicon and rule patterns, medspaCy ConText, matching by
meaning with the packaged MiniLM (when on), and the choice of the next questions. Sizes: short
messages, 180-character messages, a 24-message conversation (the whole conversation is
re-read at every message), a 4,096-letter word, and 200,000-character messages (one word; a
pasted text; distinct prose; the project's guideline pages; a text with a red flag only at
its end). The optional LLM classifier is timed
apart (`--llm`). Run: python -m bench.triage_latency [--json] [--llm]
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import report, summary
from bot.config import load_settings
from bot.llm.factory import build_llm
from bot.models import TriageLevel
from bot.prompts import PromptLibrary
from bot.runtime import build_triage
from bot.triage.service import ModelVote, TriageService
from rag.embeddings import MiniLMEmbeddings

SHORT = [
    "I have a sore throat",
    "my baby has a fever",
    "cant breathe properly",
    "胸口痛，出冷汗",
    "burning when I pee",
    "back pain after lifting",
]
# About 180 characters each.
MEDIUM = [
    "I'm 34 and I've had a cough and a runny nose for about five days. No fever, no chest "
    "pain, breathing is fine, but I feel tired and my throat is scratchy in the mornings.",
    "My 3 year old has had a temperature of 38.6 since this morning. She is drinking but "
    "not eating much and seems a bit more sleepy than usual. No rash that I can see at all.",
    "I twisted my ankle playing football yesterday. It is swollen and bruised and it hurts "
    "to walk on it but I can put some weight on it. Should I get an x-ray or just rest it?",
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
PASTED = (
    "Last winter I had a cough that went on for weeks and my GP gave me antibiotics. "
    "My knee has been stiff since I started running again, no swelling though. "
    "I sleep badly when work is busy and drink too much coffee. "
)


def _time(decide: Callable[[], object], rounds: int) -> dict[str, float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        decide()
        times.append((time.perf_counter() - start) * 1000)
    return summary(times)


def decisions(service: TriageService, rounds: int) -> dict[str, object]:
    """Time one triage decision per input kind; milliseconds."""
    huge_word = "a" * 200_000
    pasted = (PASTED * (200_000 // len(PASTED) + 1))[:200_000]
    unique = " ".join(f"{PASTED.replace('.', f' on day {i}.')}" for i in range(1_200))[:200_000]
    red_flag_last = pasted[: 200_000 - 40] + " now my face is drooping on one side"
    # The project's own guideline pages pasted into one message: dense medical prose where
    # every red-flag word occurs, mostly in "if you have ..." sentences (the hardest case).
    pages = sorted((Path(__file__).parents[1] / "rag" / "guidelines").glob("*.md"))
    medical = " ".join(p.read_text(encoding="utf-8") for p in pages)
    medical = (medical * (200_000 // len(medical) + 1))[:200_000]
    found = service.decide([red_flag_last], ask=False).level
    results: dict[str, object] = {
        "short_ms": summary(
            [
                ms
                for m in SHORT
                for ms in [_one(lambda m=m: service.decide([m])) for _ in range(rounds // 6)]
            ]
        ),
        "medium_180_chars_ms": summary(
            [
                ms
                for m in MEDIUM
                for ms in [_one(lambda m=m: service.decide([m])) for _ in range(rounds // 3)]
            ]
        ),
        "conversation_24_messages_ms": _time(lambda: service.decide(HISTORY), rounds // 2),
        "word_4096_letters_ms": _time(lambda: service.decide(["x" * 4096]), 20),
        "word_200k_letters_ms": _time(lambda: service.decide([huge_word]), 10),
        "pasted_200k_chars_ms": _time(lambda: service.decide([pasted]), 10),
        "distinct_200k_chars_ms": _time(lambda: service.decide([unique]), 10),
        "guideline_pages_200k_chars_ms": _time(lambda: service.decide([medical]), 5),
        "red_flag_at_end_of_200k_ms": _time(lambda: service.decide([red_flag_last]), 10),
        "red_flag_at_end_of_200k_found": found is TriageLevel.EMERGENCY,
    }
    return results


def _one(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


async def llm_ms(n: int) -> dict[str, float]:
    """Time the embedded LLM classifier's advice (not on the emergency path)."""
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
    """Print the triage latency figures (or JSON with --json)."""
    settings = load_settings()
    prompts = PromptLibrary(settings.prompts_dir)
    embedder = MiniLMEmbeddings(
        settings.embedding_model_path,
        batch_size=settings.embedding_batch_size,
        precision=settings.embedding_precision,
    )
    words_only = build_triage(settings, None, prompts)
    with_meaning = build_triage(settings, None, prompts, embedder=embedder)
    result: dict[str, object] = {
        "embedding_precision": "bf16" if embedder.bf16 else "fp32",
        "words_only": decisions(words_only, 300),
        "with_meaning": decisions(with_meaning, 120),
    }
    if "--llm" in sys.argv:
        result["llm_classifier_ms"] = asyncio.run(llm_ms(20))
    report(result, "--json" in sys.argv)


if __name__ == "__main__":
    main()
