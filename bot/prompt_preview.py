"""Preview a prompt draft: run it on a sample conversation beside the active version.

The draft goes through the same code the patient's message would (the answer chain with its
groundedness check, the triage classifier, the case summariser, the patient texts), with the
configured LLM, so an operator sees what patients and doctors would actually get.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from pydantic import BaseModel

from bot.cases.models import CaseStatus, CaseView, TranscriptLine
from bot.cases.summary import CaseSummarizer
from bot.engine import ConversationEngine
from bot.memory.base import Turn
from bot.models import TriageLevel
from bot.prompts import PromptLibrary
from bot.replies import detect_language
from bot.triage.classifier import TriageClassifier
from rag.answer import GuidelineAnswerer

# Stock conversations an operator can pick (the last line is the patient's question).
SAMPLES: dict[str, list[str]] = {
    "fever": ["I have had a mild fever since yesterday, what can I do?"],
    "sore throat follow-up": [
        "My throat has been sore for two days.",
        "Is salt water gargling any good?",
    ],
    "chest pain": ["I'm 58 and have had tight chest pain for 20 minutes, I'm sweating"],
    "burn": ["I burnt my hand on the oven, it's red and stinging"],
    "Chinese fever": ["我发烧了怎么办"],
}
# Sample values for the variables patient texts declare.
_SAMPLE_VALUES: dict[str, object] = {
    "explanation": "(why the rules flagged it)",
    "position": 2,
    "minutes": 30,
    "doctor": "Dr Ada",
    "limit": 4000,
    "memory_days": 7,
    "retention_days": 365,
    "record_days": 3650,
}


class PreviewResult(BaseModel):
    """What the draft and the active version produce for the same conversation."""

    draft: str
    active: str
    active_version: int


class PromptPreview:
    """Run drafts through the engine's own components."""

    def __init__(self, engine: ConversationEngine) -> None:
        self.engine = engine

    async def run(self, name: str, source: str, conversation: list[str]) -> PreviewResult:
        """Preview `source` (a draft of prompt `name`) on `conversation`."""
        active = self.engine.writer.prompts
        draft = copy.deepcopy(active)
        draft.apply(name, source, version=0)  # raises ConfigError for an invalid draft
        lines = [line.strip() for line in conversation if line.strip()] or SAMPLES["fever"]
        return PreviewResult(
            draft=await self._output(name, draft, lines),
            active=await self._output(name, active, lines),
            active_version=active.versions[name],
        )

    async def _output(self, name: str, library: PromptLibrary, lines: list[str]) -> str:
        language = detect_language(lines[-1], "en")
        llm = self.engine.answerer.llm
        if name in library.groups:  # patient texts: each one, as the patient reads it
            shown = []
            for key, entry in library.groups[name].items():
                values = {v: _SAMPLE_VALUES.get(v, f"<{v}>") for v in entry.variables}
                body = library.text(key, language, emergency_number="112", **values)
                shown.append(f"[{key}]\n{body}")
            return "\n\n".join(shown)
        if name in ("triage", "triage_repair"):
            hits = (await self.engine.triage.adecide(lines, language, ask=False)).hits
            outcome = await TriageClassifier(llm, library).classify(
                lines, [h.rule_id for h in hits]
            )
            return outcome.model_dump_json(indent=2)
        if name == "case_summary":
            view = CaseView(
                id=0,
                level=TriageLevel.URGENT,
                status=CaseStatus.OPEN,
                reasons=[
                    h.rule_id for h in (await self.engine.triage.adecide(lines, language)).hits
                ],
                summary="",
                summary_source="",
                opened_by="preview",
                claimed_by=None,
                created_at=datetime.now(UTC),
                channel="preview",
                chat_id="preview",
                pseudonym="preview",
                consented=True,
            )
            transcript = [TranscriptLine(role="patient", text=t, at=view.created_at) for t in lines]
            summary, source = await CaseSummarizer(llm, library, self.engine.rules).summarize(
                view, transcript, None
            )
            return f"{summary}\n\n(written by: {source})"
        # answer, system, condense: the whole answer chain with its groundedness check.
        original = self.engine.answerer
        answerer = GuidelineAnswerer(
            original.retriever, llm, library, k=original.k, mmr=original.mmr
        )
        history = [Turn(role="patient", text=t) for t in lines[:-1]]
        answer = await answerer.answer(lines[-1], history, language)
        if not answer.found:
            return library.text("no_guideline", language, emergency_number="112")
        cited = "\n".join(f"[{c.number}] {c.title} - {c.section}" for c in answer.citations)
        verdict = "grounded" if answer.grounded else "not grounded: guidelines quoted instead"
        return f"{answer.text}\n\n{cited}\n\n({verdict})"
