"""Answer path: every answer cites a guideline or says plainly that none applies.

Asks N questions (sampled, seeded, from a MedQuAD folder, plus the bundled pack's own topics)
through the full LCEL chain with the configured LLM over the bundled pack's index, and counts
answers with citations, extractive fallbacks, "no guideline" replies and violations.

Run: python -m bench.answer_path [--medquad DIR] [-n 100] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from bench.common import report, summary
from bot.config import REPO_ROOT, load_settings
from bot.llm.factory import build_llm
from bot.prompts import PromptLibrary
from rag.answer import GuidelineAnswerer
from rag.evaluate import medquad_questions
from rag.library import BUNDLED, GuidelineLibrary
from rag.loaders import load_file


async def run(questions: list[str]) -> dict[str, object]:
    settings = load_settings()
    folder = Path(tempfile.mkdtemp(prefix="carebot-answer-bench-"))
    library = GuidelineLibrary.open(settings, index_dir=folder)
    library.ingest([BUNDLED])
    llm = build_llm(settings)
    await llm.warm_up()
    answerer = GuidelineAnswerer(library.retriever, llm, PromptLibrary(settings.prompts_dir))
    counts = {"generated": 0, "extractive": 0, "no_guideline": 0, "violations": 0}
    times = []
    try:
        for question in questions:
            started = time.perf_counter()
            answer = await answerer.answer(question, [], "en")
            times.append((time.perf_counter() - started) * 1000)
            if not answer.found:
                counts["no_guideline"] += 1
            elif not answer.citations:
                counts["violations"] += 1
            else:
                counts["extractive" if answer.extractive else "generated"] += 1
    finally:
        await llm.aclose()
    return {"questions": len(questions), **counts, "latency_ms": summary(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--medquad", type=Path, default=REPO_ROOT.parent / "shared/data/medquad")
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # Half the questions are about the pack's own topics, half are MedQuAD's (mostly not).
    own = [
        f"What can I do about {load_file(p).title.lower()}?" for p in sorted(BUNDLED.glob("*.md"))
    ]
    pool = [q for q, _ in medquad_questions(args.medquad)] if args.medquad.is_dir() else []
    rng = random.Random(args.seed)
    mine = rng.sample(own, min(args.n // 2, len(own)))
    # MedQuAD fills the rest, so the run has N questions even when the pack has fewer topics.
    questions = mine + rng.sample(pool, min(args.n - len(mine), len(pool)))
    result = asyncio.run(run(questions))
    report(result, args.json)


if __name__ == "__main__":
    main()
