"""The LLM triage classifier: valid, repairable and hopeless model output."""

from __future__ import annotations

import json

from bot.config import REPO_ROOT
from bot.models import TriageLevel
from bot.prompts import PromptLibrary
from bot.triage.classifier import MissingFact, TriageClassifier
from bot.triage.rules import TriageRules
from bot.triage.service import ModelVote, TriageService
from tests.fakes import scripted

PROMPTS = PromptLibrary(REPO_ROOT / "prompts")
GOOD = json.dumps({"level": "routine", "reasons": ["lasting cough"], "missing": ["age"]})


async def test_valid_output_is_parsed_and_the_prompt_carries_the_conversation() -> None:
    llm = scripted(GOOD)
    outcome = await TriageClassifier(llm, PROMPTS).classify(["cough for 4 weeks"], ["RT-X"])
    assert outcome.result is not None and outcome.result.level is TriageLevel.ROUTINE
    assert outcome.result.missing == [MissingFact.AGE] and not outcome.repaired
    prompt = llm.model.prompts[0][-1].content  # type: ignore[attr-defined]
    assert "cough for 4 weeks" in prompt and "RT-X" in prompt


async def test_harmless_deviations_are_forgiven() -> None:
    raw = 'Sure! {"level": "Self-care", "reasons": "just a cold", "missing": ["age", "mood"]}'
    outcome = await TriageClassifier(scripted(raw), PROMPTS).classify(["cold"], [])
    assert outcome.result is not None and outcome.result.level is TriageLevel.SELF_CARE
    assert outcome.result.reasons == ["just a cold"] and outcome.result.missing == [MissingFact.AGE]


async def test_malformed_output_is_repaired_once() -> None:
    llm = scripted("level: urgent!!", GOOD)
    outcome = await TriageClassifier(llm, PROMPTS).classify(["cough"], [])
    assert outcome.repaired and outcome.result is not None
    assert len(llm.model.prompts) == 2  # type: ignore[attr-defined]
    assert "not valid" in llm.model.prompts[1][-1].content  # type: ignore[attr-defined]


async def test_hopeless_output_falls_back_to_the_rules() -> None:
    llm = scripted('{"level": "purple"}', "still not json")
    service = TriageService(TriageRules(), TriageClassifier(llm, PROMPTS), ModelVote.RAISE)
    result = await service.assess(["I have had chest pain since this morning"])
    assert result.model is None and result.model_error and "malformed" in result.model_error
    assert result.level is TriageLevel.URGENT and result.decided_by == "rules"


async def test_a_dead_server_falls_back_to_the_rules() -> None:
    llm = scripted(fail_with="connection refused")
    service = TriageService(TriageRules(), TriageClassifier(llm, PROMPTS), ModelVote.RAISE)
    text = "runny nose for two days, no trouble breathing, no chest pain, not confused"
    result = await service.assess([text])
    assert result.model is None and result.model_error
    assert result.level is TriageLevel.SELF_CARE


async def test_emergencies_never_wait_for_the_model() -> None:
    llm = scripted(GOOD)
    service = TriageService(TriageRules(), TriageClassifier(llm, PROMPTS), ModelVote.RAISE)
    result = await service.assess(["I can't breathe"])
    assert result.level is TriageLevel.EMERGENCY
    assert llm.model.prompts == []  # type: ignore[attr-defined]
