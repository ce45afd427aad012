"""Keep instructions aimed at a language model out of the guideline index.

Guideline files come from operators, but a copied web page or a tampered PDF can carry text
such as "ignore previous instructions and ...". Such a sentence is never medical guidance, so it
is dropped at ingest (and counted in the ingest report) instead of reaching the answer prompt.
"""

from __future__ import annotations

import re

_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+|\n")
_INSTRUCTION = re.compile(
    r"\b(ignore|disregard|forget|override)\b[^.!?\n]{0,40}\b(previous|prior|above|earlier|all|"
    r"any|your)\b[^.!?\n]{0,30}\b(instructions?|prompts?|rules|directions|guidelines)\b"
    r"|\byou are now\b|\b(system|developer) prompt\b|\bjailbreak\b|\bdeveloper mode\b"
    r"|^\s*(system|assistant)\s*:|\bnew instructions\s*:"
    r"|(忽略|无视|忘记)[^。！？\n]{0,10}(之前|以上|上面|所有|先前)[^。！？\n]{0,6}(指令|指示|提示|规则)",
    re.IGNORECASE,
)


def strip_instructions(text: str) -> tuple[str, int]:
    """Return `text` without instruction-like sentences, and how many were removed."""
    if not _INSTRUCTION.search(text):
        return text, 0
    kept, removed = [], 0
    for line in text.split("\n"):
        parts = _SENTENCE.split(line)
        good = [p for p in parts if not _INSTRUCTION.search(p)]
        removed += len(parts) - len(good)
        if good or not parts:
            kept.append(" ".join(good))
    return "\n".join(kept).strip(), removed
