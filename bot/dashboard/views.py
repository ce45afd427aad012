"""What the case page shows: the case, its reasons explained, and what the viewer may do."""

from __future__ import annotations

from pydantic import BaseModel

from bot.cases.models import AuditLine, CaseDetail, CaseStatus
from bot.dashboard.accounts import StaffAccount, StaffAccounts
from bot.dashboard.actions import Disposition, holds
from bot.triage.rules import TriageRules

TRIAGE_FIELDS = {
    "level": "Level",
    "decided_by": "Decided by",
    "rule_level": "Level from the rules",
    "model_level": "Level from the model",
    "missing": "Facts not known",
}


class AuditRow(BaseModel):
    """One audit event, with the staff member's name instead of their id."""

    line: AuditLine
    actor: str
    action: str
    details: str


class CasePage(BaseModel):
    """Everything the case template needs."""

    detail: CaseDetail
    reasons: list[tuple[str, str]]
    triage: list[tuple[str, str]]
    audit: list[AuditRow]
    can_claim: bool
    can_reply: bool
    can_resolve: bool
    dispositions: list[tuple[str, str]]
    reads: list[AuditRow] | None = None  # who read the case: shown to administrators


def _value(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return "—" if value in (None, "") else str(value)


def _audit(line: AuditLine, names: dict[str, str]) -> AuditRow:
    details = "; ".join(
        f"{key}: {_value(value)}"
        for key, value in line.details.items()
        if value not in (None, "") and key != "by"  # "by" repeats the actor
    )
    return AuditRow(
        line=line,
        actor=names.get(line.actor, line.actor),
        action=line.action.split(".", 1)[-1].replace("_", " "),
        details=details,
    )


async def case_page(
    detail: CaseDetail,
    viewer: StaffAccount,
    accounts: StaffAccounts,
    rules: TriageRules,
    reads: list[AuditLine] | None = None,
) -> CasePage:
    """Explain the case's rules, name the staff in its audit trail and among its readers, and
    offer what may be done."""
    names = {a.label: a.display_name for a in await accounts.all()}
    case = detail.case
    triage = detail.triage or {}
    return CasePage(
        detail=detail,
        reasons=[(rid, rules.explain(rid) or "") for rid in case.reasons],
        triage=[
            (label, _value(triage[key])) for key, label in TRIAGE_FIELDS.items() if key in triage
        ],
        audit=[_audit(line, names) for line in detail.audit],
        can_claim=case.status is CaseStatus.OPEN,
        can_reply=holds(case, viewer),
        can_resolve=holds(case, viewer),
        dispositions=[(d.value, d.label) for d in Disposition],
        reads=None if reads is None else [_audit(line, names) for line in reads],
    )
