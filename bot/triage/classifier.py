"""The LLM triage classifier: JSON-schema output, one repair attempt, then a safe fallback."""

from __future__ import annotations

import json
import logging
import re
from enum import StrEnum
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import BaseModel, Field, ValidationError

from bot.errors import LLMUnavailable
from bot.llm.base import LLMBackend, json_schema_format
from bot.models import TriageLevel
from bot.prompts import PromptLibrary

logger = logging.getLogger(__name__)
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


class MissingFact(StrEnum):
    """Key facts a triage decision may need; each has a follow-up question in patient texts."""

    AGE = "age"
    DURATION = "duration"
    SEVERITY = "severity"
    PREGNANCY = "pregnancy"
    BREATHING = "breathing"
    TEMPERATURE = "temperature"


class ModelTriage(BaseModel):
    """What the classifier must answer, as a JSON schema the server enforces."""

    level: TriageLevel
    reasons: list[str] = Field(default_factory=list, max_length=4)
    missing: list[MissingFact] = Field(default_factory=list, max_length=6)


class ClassifierOutcome(BaseModel):
    """The classifier's verdict, or why there is none."""

    result: ModelTriage | None = None
    error: str | None = None
    repaired: bool = False


def _coerce(raw: str) -> ModelTriage:
    """Parse the model's text, forgiving harmless deviations ("Self-care", extra prose)."""
    found = _JSON_OBJECT.search(raw)
    data: Any = json.loads(found.group(0) if found else raw)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    level = str(data.get("level", "")).strip().lower().replace("-", "_").replace(" ", "_")
    data["level"] = level
    reasons = data.get("reasons", [])
    data["reasons"] = [str(r)[:300] for r in (reasons if isinstance(reasons, list) else [reasons])][
        :4
    ]
    missing = data.get("missing", [])
    known = {m.value for m in MissingFact}
    data["missing"] = [m for m in (missing if isinstance(missing, list) else []) if m in known]
    return ModelTriage.model_validate(data)


class TriageClassifier:
    """Ask the LLM for a triage level over the conversation."""

    def __init__(self, llm: LLMBackend, prompts: PromptLibrary) -> None:
        self.llm, self.prompts = llm, prompts

    async def classify(self, patient_texts: list[str], rule_ids: list[str]) -> ClassifierOutcome:
        """Return the model's triage; never raises (errors are reported in the outcome)."""
        conversation = "\n".join(f"- {t}" for t in patient_texts[-10:])
        prompt = self.prompts.template("triage").render(
            conversation=conversation[-6000:],
            rule_findings=", ".join(rule_ids) or "none",
        )
        messages: list[BaseMessage] = [HumanMessage(prompt)]
        schema = json_schema_format(ModelTriage)
        try:
            raw = await self.llm.complete(messages, response_format=schema)
        except LLMUnavailable as exc:
            return ClassifierOutcome(error=str(exc))
        try:
            return ClassifierOutcome(result=_coerce(raw))
        except (ValueError, ValidationError) as first:
            logger.info(
                "triage output malformed (%s); asking once for a repair", type(first).__name__
            )
        # One repair round: show the model its answer and the schema, ask for JSON only.
        messages += [
            AIMessage(raw[:2000]),
            HumanMessage(self.prompts.template("triage_repair").render()),
        ]
        try:
            raw = await self.llm.complete(messages, response_format=schema)
            return ClassifierOutcome(result=_coerce(raw), repaired=True)
        except LLMUnavailable as exc:
            return ClassifierOutcome(error=str(exc))
        except (ValueError, ValidationError) as second:
            return ClassifierOutcome(error=f"malformed output: {type(second).__name__}")
