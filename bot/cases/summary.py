"""Case summaries for doctors: written by the LLM, checked, or built from the triage data.

The LLM only writes the narrative parts (complaint, history, open questions); the level, the
red-flag rule ids and what the bot advised always come from the structured record, so a
weak or failing model can make a summary less fluent, never wrong about the safety facts.
"""

from __future__ import annotations

import logging

from langchain_core.messages import HumanMessage
from pydantic import BaseModel, Field, ValidationError

from bot.cases.models import CaseView, TranscriptLine
from bot.errors import LLMUnavailable
from bot.llm.base import LLMBackend
from bot.prompts import PromptLibrary
from bot.replies import is_consent
from bot.triage.rules import TriageRules

logger = logging.getLogger(__name__)
_MAX_CONVERSATION_CHARS = 4000


class _Narrative(BaseModel):
    chief_complaint: str = Field(min_length=3, max_length=300)
    history: str = Field(default="", max_length=1200)
    open_questions: list[str] = Field(default_factory=list, max_length=6)


def _explain(rules: TriageRules, rule_ids: list[str]) -> list[str]:
    return [f"{rid} ({why})" if (why := rules.explain(rid)) else rid for rid in rule_ids]


class CaseSummarizer:
    """Write the doctor's summary of a case."""

    def __init__(self, llm: LLMBackend, prompts: PromptLibrary, rules: TriageRules) -> None:
        self.llm, self.prompts, self.rules = llm, prompts, rules

    async def summarize(
        self, case: CaseView, transcript: list[TranscriptLine], triage: dict[str, object] | None
    ) -> tuple[str, str]:
        """Return (summary, source) where source is "llm" or "rules"."""
        # What the patient said about their problem: not "yes" to consent, not commands.
        patient = [
            t.text
            for t in transcript
            if t.role == "patient"
            and len(t.text.strip()) > 2
            and not t.text.startswith("/")
            and not is_consent(t.text)
        ]
        advice = next((t.text for t in reversed(transcript) if t.role == "bot"), "")
        facts = self._facts(case, triage, advice)
        if not case.consented:
            # Nothing the patient wrote goes to a model before they agreed (an emergency
            # opens a case before consent): the summary comes from the triage data.
            return self._render(self._fallback(patient, triage), facts), "rules"
        try:
            narrative = await self._narrative(case, transcript, facts)
            source = "llm"
        except (LLMUnavailable, ValidationError, ValueError) as exc:
            logger.warning(
                "case %s: summary from the triage data (%s)", case.id, type(exc).__name__
            )
            narrative = self._fallback(patient, triage)
            source = "rules"
        return self._render(narrative, facts), source

    def _facts(
        self, case: CaseView, triage: dict[str, object] | None, advice: str
    ) -> dict[str, str]:
        reasons = _explain(self.rules, case.reasons) or ["none"]
        decided = str((triage or {}).get("decided_by") or "rules")
        first_line = advice.strip().splitlines()[0][:300] if advice.strip() else "nothing yet"
        return {
            "level": case.level.value,
            "red_flags": "; ".join(reasons),
            "evidence": _evidence(triage),
            "screens": _screens(triage),
            "triage": f"{case.level.value} (decided by {decided}; opened by {case.opened_by})",
            "advice": first_line,
        }

    async def _narrative(
        self, case: CaseView, transcript: list[TranscriptLine], facts: dict[str, str]
    ) -> _Narrative:
        lines = [f"{t.role}: {t.text}" for t in transcript if t.text.strip()]
        conversation = "\n".join(lines)[-_MAX_CONVERSATION_CHARS:]
        prompt = self.prompts.template("case_summary").render(
            conversation=conversation,
            level=facts["level"],
            red_flags=facts["red_flags"],
            advice=facts["advice"],
        )
        narrative = await self.llm.structured([HumanMessage(prompt)], _Narrative)
        if not narrative.chief_complaint.strip():
            raise ValueError("empty chief complaint")
        return narrative

    @staticmethod
    def _fallback(patient: list[str], triage: dict[str, object] | None) -> _Narrative:
        listed = (triage or {}).get("missing") or []
        missing = [str(m) for m in listed] if isinstance(listed, list) else []
        first = patient[0] if patient else "(no text)"
        return _Narrative(
            chief_complaint=first[:280],
            history=" / ".join(patient[1:])[-1000:] if len(patient) > 1 else "",
            open_questions=[f"Ask about: {m}" for m in missing][:6],
        )

    @staticmethod
    def _render(n: _Narrative, facts: dict[str, str]) -> str:
        questions = "; ".join(n.open_questions) or "none recorded"
        return "\n".join(
            [
                f"Chief complaint: {n.chief_complaint.strip()}",
                f"History: {n.history.strip() or 'none given'}",
                f"Red flags: {facts['red_flags']}",
                f"Evidence: {facts['evidence']}",
                f"Screening answers: {facts['screens']}",
                f"Triage: {facts['triage']}",
                f"Bot advised: {facts['advice']}",
                f"Open questions: {questions}",
            ]
        )


def _evidence(triage: dict[str, object] | None) -> str:
    """The patient's words behind each rule, and how they were read, for the doctor."""
    by_rule = (triage or {}).get("evidence")
    if not isinstance(by_rule, dict):
        return "none recorded"
    parts = []
    for rule, items in list(by_rule.items())[:6]:
        for item in (items if isinstance(items, list) else [])[:2]:
            if not isinstance(item, dict):
                continue
            how = str(item.get("source", "lexicon"))
            if item.get("source") == "answer":
                how = f"answer to {item.get('finding')}"
            elif item.get("exemplar"):
                how = f"meaning ~ {str(item['exemplar'])[:60]!r} ({item.get('similarity')})"
            flags = item.get("flags") or []
            shown = f" [{', '.join(map(str, flags))}]" if flags else ""
            parts.append(f"{rule}: {str(item.get('text', ''))[:80]!r} ({how}){shown}")
    return "; ".join(parts) or "none recorded"


def _screens(triage: dict[str, object] | None) -> str:
    """The red-flag questions answered so far ("rf_breathing: no")."""
    screens = (triage or {}).get("screens")
    if not isinstance(screens, dict) or not screens:
        return "none asked"
    return ", ".join(f"{q}: {a}" for q, a in screens.items())
