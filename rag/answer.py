"""The answer chain (LangChain LCEL): condense -> retrieve -> answer -> check -> cite.

Each step is a runnable over one state dict, so the chain can be traced, and a step replaced,
without touching the others. The check is what keeps a small model honest: an answer that the
passages do not support is replaced by the passages themselves, cited (see docs/rag.md).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough
from pydantic import BaseModel, Field

from bot.errors import LLMBusy, LLMUnavailable
from bot.llm.base import LLMBackend
from bot.memory.base import Turn
from bot.models import Citation
from bot.prompts import PromptLibrary
from bot.workers import RETRIEVAL
from rag.documents import guess_language
from rag.errors import IndexUnavailable
from rag.grounding import is_grounded
from rag.lexical import tokenize
from rag.retrieval import Hit, Retrieval, Retriever

logger = logging.getLogger(__name__)
_MARKER = re.compile(r"\[(\d+)\]")
# Pages written for children are for questions about a child.
_CHILD = re.compile(
    r"\b(child|children|kid|kids|baby|babies|toddler|infant|newborn|son|daughter|boy|girl)s?\b"
    r"|孩子|宝宝|婴儿|儿子|女儿|小孩|儿童",
    re.IGNORECASE,
)
_FOLLOW_UP = re.compile(r"\b(it|that|this|they|them|those|these|he|she|him|her)\b", re.IGNORECASE)
OnDelta = Callable[[str], Awaitable[None]]


class Answer(BaseModel):
    """A guideline answer, before the engine adds triage advice and the disclaimer."""

    text: str = ""
    citations: list[Citation] = Field(default_factory=list)
    found: bool = Field(description="Whether any relevant guideline passage was retrieved.")
    grounded: bool = False
    extractive: bool = False
    llm_error: str | None = None
    question: str = Field(default="", description="The standalone question that was searched.")
    hits: list[Hit] = Field(default_factory=list, description="Passages given to the model.")


def standalone_question(question: str, history: list[Turn]) -> str:
    """Join a short follow-up ("and for children?") to the patient's previous message."""
    terms = len(tokenize(question))
    # Short, or short with a pronoun ("how long does it last"): it leans on what came before.
    if terms >= 6 or (terms >= 4 and not _FOLLOW_UP.search(question)):
        return question
    previous = [t.text for t in history if t.role == "patient" and t.text != question]
    return f"{previous[-1]} {question}" if previous else question


class GuidelineAnswerer:
    """Answer from the best guideline passages; quote them when the model cannot be trusted."""

    def __init__(
        self,
        retriever: Retriever,
        llm: LLMBackend,
        prompts: PromptLibrary,
        k: int = 3,
        mmr: bool = True,
        condense_with_llm: bool = True,
    ) -> None:
        self.retriever, self.llm, self.prompts = retriever, llm, prompts
        self.k, self.mmr, self.condense_with_llm = k, mmr, condense_with_llm
        self.chain: Runnable[dict[str, Any], Answer] = (
            RunnablePassthrough.assign(standalone=RunnableLambda(self._condense))
            | RunnablePassthrough.assign(retrieval=RunnableLambda(self._retrieve))
            | RunnableLambda(self._respond)
        )

    async def answer(
        self,
        question: str,
        history: list[Turn],
        language: str,
        on_delta: OnDelta | None = None,
    ) -> Answer:
        """Answer `question`; never raise for an LLM failure (fall back to quoting)."""
        state = {"question": question, "history": history, "language": language}
        return await self.chain.ainvoke({**state, "on_delta": on_delta})

    # --- steps -----------------------------------------------------------------------------

    async def _condense(self, state: dict[str, Any]) -> str:
        question: str = state["question"]
        history: list[Turn] = state["history"]
        fallback = standalone_question(question, history)
        if fallback == question or not self.condense_with_llm:
            return fallback
        recent = [t for t in history if t.text != question][-6:]
        transcript = "\n".join(f"{t.role}: {t.text[:500]}" for t in recent)
        prompt = self.prompts.template("condense").render(history=transcript, question=question)
        try:
            rewritten = (await self.llm.complete([HumanMessage(prompt)])).strip()
        except LLMUnavailable:
            return fallback
        return rewritten if _plausible_rewrite(rewritten, question, transcript) else fallback

    async def _retrieve(self, state: dict[str, Any]) -> Retrieval:
        query: str = state["standalone"]
        # Passages are in the language of the question; a guideline the patient cannot read
        # is no answer, and an English-only index says so for a Chinese question.
        language = guess_language(query)
        try:
            retrieval = await RETRIEVAL.run(
                self.retriever.search, query, self.k * 3, language=language
            )
        except IndexUnavailable as exc:
            # Without the index there is nothing to ground an answer in; say so calmly.
            logger.error("guideline index unavailable: %s", exc)
            return Retrieval(query=query, hits=[], relevant=False, best_similarity=0.0)
        about_child = bool(_CHILD.search(query))
        for hit in retrieval.hits:
            if hit.chunk.audience == "children" and not about_child:
                hit.score /= 2
        ranked = sorted(retrieval.hits, key=lambda h: -h.score)
        retrieval.hits = self.retriever.diversify(ranked, self.k) if self.mmr else ranked[: self.k]
        return retrieval

    async def _respond(self, state: dict[str, Any]) -> Answer:
        retrieval: Retrieval = state["retrieval"]
        hits = retrieval.hits
        asked = {"question": state["standalone"], "hits": hits}
        if not hits:
            return Answer(found=False, **asked)
        passages = [
            f"[{n}] {h.chunk.title} - {h.chunk.section}: {h.chunk.text}"
            for n, h in enumerate(hits, 1)
        ]
        messages = [
            SystemMessage(self.prompts.template("system").render()),
            HumanMessage(
                self.prompts.template("answer").render(
                    question=state["question"], passages="\n\n".join(passages)
                )
            ),
        ]
        draft, error, busy = "", None, False
        on_delta: OnDelta | None = state.get("on_delta")
        try:
            async for piece in self.llm.stream(messages):
                draft += piece
                if on_delta is not None:
                    await on_delta(piece)
        except LLMUnavailable as exc:
            error, busy = str(exc), isinstance(exc, LLMBusy)
        draft = draft.strip()
        if error is None and is_grounded(draft, [h.chunk.text for h in hits]):
            cited = sorted({int(n) for n in _MARKER.findall(draft) if 0 < int(n) <= len(hits)})
            if not cited:
                cited = list(range(1, len(hits) + 1))
                draft += " " + "".join(f"[{n}]" for n in cited)
            return Answer(
                text=draft, citations=citations(hits, cited), found=True, grounded=True, **asked
            )
        if error is None:
            logger.info("generated answer failed the groundedness check; quoting passages")
        return self._extractive(hits, state["language"], error, asked, busy)

    def _extractive(
        self,
        hits: list[Hit],
        language: str,
        error: str | None,
        asked: dict[str, Any],
        busy: bool = False,
    ) -> Answer:
        parts = [self.prompts.text("extractive_intro", language)]
        if error is not None:
            key = "llm_busy" if busy else "llm_unavailable"
            parts.insert(0, self.prompts.text(key, language))
        top = hits[:2]
        for n, h in enumerate(top, 1):
            parts.append(f"{h.chunk.title} - {h.chunk.section} [{n}]:\n{_trim(h.chunk.text)}")
        return Answer(
            text="\n\n".join(parts),
            citations=citations(top, list(range(1, len(top) + 1))),
            found=True,
            grounded=True,
            extractive=True,
            llm_error=error,
            **asked,
        )


def _plausible_rewrite(rewritten: str, question: str, transcript: str) -> bool:
    """Accept a condensed question only if it is one short line drawn from the conversation."""
    if not rewritten or "\n" in rewritten or len(rewritten) > 300:
        return False
    words = set(tokenize(rewritten))
    known = set(tokenize(question)) | set(tokenize(transcript))
    return bool(words) and len(words & known) / len(words) >= 0.6


def _trim(text: str, limit: int = 600) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    return cut[: cut.rfind("\n")] if "\n" in cut else cut.rsplit(" ", 1)[0] + " ..."


def citations(hits: list[Hit], numbers: list[int]) -> list[Citation]:
    """Return citations [n] for the given 1-based hit numbers."""
    cited = []
    for n in numbers:
        chunk = hits[n - 1].chunk
        section = f"{chunk.section}, page {chunk.page}" if chunk.page else chunk.section
        cited.append(
            Citation(
                number=n,
                title=chunk.title,
                source=chunk.source,
                section=section,
                path=chunk.url or chunk.path,
            )
        )
    return cited
