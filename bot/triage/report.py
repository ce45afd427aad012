"""Plain-text description of a triage decision, for `carebot triage`."""

from __future__ import annotations

from bot.triage.service import TriageResult


def describe_triage(result: TriageResult) -> str:
    """Return a few readable lines: level, how it was decided, rules, facts, model output."""
    lines = [f"Level: {result.level.value} (decided by {result.decided_by})"]
    if result.hits:
        lines.append("Rules that fired:")
        lines += [f"  {h.level.value:<10} {h.rule_id}: {h.explanation}" for h in result.hits]
    else:
        lines.append("Rules that fired: none (default level)")
    facts = result.facts.model_dump(exclude_none=True, exclude={"vitals", "age_stated"})
    vitals = result.facts.vitals.model_dump(exclude_none=True)
    lines.append(
        f"Facts: {facts or 'none stated'}" + (f"; vital signs: {vitals}" if vitals else "")
    )
    if result.model is not None:
        lines.append(
            f"Model: {result.model.level.value}; reasons: {'; '.join(result.model.reasons)}"
        )
    elif result.model_error:
        lines.append(f"Model: no verdict ({result.model_error})")
    if result.missing:
        lines.append("Would ask about: " + ", ".join(m.value for m in result.missing))
    return "\n".join(lines)
