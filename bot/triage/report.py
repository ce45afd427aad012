"""Plain-text description of a triage decision, for `carebot triage`."""

from __future__ import annotations

from bot.triage.service import TriageResult


def describe_triage(result: TriageResult) -> str:
    """Return a few readable lines: level, rules with evidence, facts, questions, model."""
    lines = [f"Level: {result.level.value} (decided by {result.decided_by})"]
    if result.hits:
        lines.append("Rules that fired:")
        for hit in result.hits:
            lines.append(f"  {hit.level.value:<10} {hit.rule_id}: {hit.explanation}")
            for e in hit.evidence:
                how = e.source + (f" ~ {e.exemplar!r} ({e.similarity:.2f})" if e.exemplar else "")
                flags = f" [{', '.join(e.flags)}]" if e.flags else ""
                lines.append(f"      {e.finding}: {e.text!r} ({how}){flags}")
    else:
        lines.append("Rules that fired: none (default level)")
    facts = result.facts.model_dump(exclude_none=True, exclude={"vitals", "age_stated"})
    vitals = result.facts.vitals.model_dump(exclude_none=True)
    lines.append(
        f"Facts: {facts or 'none stated'}" + (f"; vital signs: {vitals}" if vitals else "")
    )
    lines.append("Complaints: " + (", ".join(result.complaints) or "none"))
    if result.model is not None:
        lines.append(
            f"Model: {result.model.level.value}; reasons: {'; '.join(result.model.reasons)}"
        )
    elif result.model_error:
        lines.append(f"Model: no verdict ({result.model_error})")
    if result.questions:
        lines.append("Would ask now: " + ", ".join(result.questions))
    if result.unknown:
        lines.append("Still unknown: " + ", ".join(result.unknown))
    return "\n".join(lines)
