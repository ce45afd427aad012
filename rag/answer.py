"""The answer chain: question -> retrieve -> answer prompt -> LLM -> groundedness -> citations."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from bot.errors import LLMUnavailable
from bot.llm.base import LLMBackend
from bot.memory.base import Turn
from bot.models import Citation
from bot.prompts import PromptLibrary
from rag.grounding import is_grounded
from rag.lexical import BM25Index, Scored, tokenize

logger = logging.getLogger(__name__)
_MARKER = re.compile(r"\[(\d+)\]")
# Pages written for children are for questions about a child.
_CHILD = re.compile(
    r"\b(child|children|kid|kids|baby|babies|toddler|infant|newborn|son|daughter|boy|girl)s?\b"
    r"|孩子|宝宝|婴儿|儿子|女儿|小孩|儿童",
    re.IGNORECASE,
)
OnDelta = Callable[[str], Awaitable[None]]


class Answer(BaseModel):
    """A guideline answer, before the engine adds triage advice and the disclaimer."""

    text: str = ""
    citations: list[Citation] = Field(default_factory=list)
    found: bool = Field(description="Whether any relevant guideline passage was retrieved.")
    grounded: bool = False
    extractive: bool = False
    llm_error: str | None = None


def standalone_question(question: str, history: list[Turn]) -> str:
    """Join a short follow-up ("and for children?") to the patient's previous message."""
    if len(tokenize(question)) >= 4:
        return question
    previous = [t.text for t in history if t.role == "patient" and t.text != question]
    return f"{previous[-1]} {question}" if previous else question


class GuidelineAnswerer:
    """Answer from the best guideline passages; quote them when the model cannot be trusted."""

    def __init__(
        self,
        index: BM25Index,
        llm: LLMBackend,
        prompts: PromptLibrary,
        k: int = 3,
        min_score: float = 3.0,
    ) -> None:
        self.index, self.llm, self.prompts = index, llm, prompts
        self.k, self.min_score = k, min_score

    def retrieve(self, question: str, language: str) -> list[Scored]:
        """Return relevant passages, preferring the patient's language when it has any."""
        about_child = bool(_CHILD.search(question))
        hits = [
            h if h.passage.audience != "children" or about_child else Scored(h.passage, h.score / 2)
            for h in self.index.search(question, self.k * 3)
        ]
        hits = sorted((h for h in hits if h.score >= self.min_score), key=lambda h: -h.score)
        same = [h for h in hits if h.passage.language == language]
        return (same or hits)[: self.k]

    async def answer(
        self,
        question: str,
        history: list[Turn],
        language: str,
        on_delta: OnDelta | None = None,
    ) -> Answer:
        """Answer `question`; never raise for an LLM failure (fall back to quoting)."""
        hits = self.retrieve(standalone_question(question, history), language)
        if not hits:
            return Answer(found=False)
        passages = [
            f"[{n}] {h.passage.title} - {h.passage.section}: {h.passage.text}"
            for n, h in enumerate(hits, 1)
        ]
        messages = [
            SystemMessage(self.prompts.template("system").render()),
            HumanMessage(
                self.prompts.template("answer").render(
                    question=question, passages="\n\n".join(passages)
                )
            ),
        ]
        draft, error = "", None
        try:
            async for piece in self.llm.stream(messages):
                draft += piece
                if on_delta is not None:
                    await on_delta(piece)
        except LLMUnavailable as exc:
            error = str(exc)
        draft = draft.strip()
        if error is None and is_grounded(draft, [h.passage.text for h in hits]):
            cited = sorted({int(n) for n in _MARKER.findall(draft) if 0 < int(n) <= len(hits)})
            if not cited:
                cited = list(range(1, len(hits) + 1))
                draft += " " + "".join(f"[{n}]" for n in cited)
            return Answer(text=draft, citations=_citations(hits, cited), found=True, grounded=True)
        if error is None:
            logger.info("generated answer failed the groundedness check; quoting passages")
        return self._extractive(hits, language, error)

    def _extractive(self, hits: list[Scored], language: str, error: str | None) -> Answer:
        intro = self.prompts.text("extractive_intro", language)
        parts = [intro]
        if error is not None:
            parts.insert(0, self.prompts.text("llm_unavailable", language))
        top = hits[:2]
        for n, h in enumerate(top, 1):
            parts.append(f"{h.passage.title} - {h.passage.section} [{n}]:\n{_trim(h.passage.text)}")
        return Answer(
            text="\n\n".join(parts),
            citations=_citations(top, list(range(1, len(top) + 1))),
            found=True,
            grounded=True,
            extractive=True,
            llm_error=error,
        )


def _trim(text: str, limit: int = 600) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    return cut[: cut.rfind("\n")] if "\n" in cut else cut.rsplit(" ", 1)[0] + " ..."


def _citations(hits: list[Scored], numbers: list[int]) -> list[Citation]:
    return [
        Citation(
            number=n,
            title=hits[n - 1].passage.title,
            source=hits[n - 1].passage.source,
            section=hits[n - 1].passage.section,
            path=hits[n - 1].passage.path,
        )
        for n in numbers
    ]
