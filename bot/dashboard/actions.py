"""What a doctor's click on Claim, Send or Resolve did, as a notice for the case page."""

from __future__ import annotations

from enum import StrEnum

from bot.cases.models import CaseStatus, CaseView, ClaimOutcome
from bot.cases.service import CaseService
from bot.dashboard.accounts import StaffAccount
from bot.dashboard.case_reads import REASON_MAX, REASON_MIN

MAX_REPLY_CHARS = 4000
MAX_OUTCOME_CHARS = 2000


class Disposition(StrEnum):
    """How a resolved case ended."""

    ADVICE_GIVEN = "advice_given"
    REFERRED_GP = "referred_gp"
    REFERRED_EMERGENCY = "referred_emergency"
    NO_ACTION = "no_action"
    OTHER = "other"

    @property
    def label(self) -> str:
        """The words on the Resolve form."""
        return {
            "advice_given": "Advice given",
            "referred_gp": "Referred to a GP",
            "referred_emergency": "Referred to emergency services",
            "no_action": "No action needed",
            "other": "Other (see note)",
        }[self.value]


class Notice(StrEnum):
    """The line shown above a case after an action (the words live in the template)."""

    CLAIMED = "claimed"
    ALREADY_YOURS = "already_yours"
    TAKEN = "taken"
    CLOSED = "closed"
    MISSING = "missing"
    REPLIED = "replied"
    UNDELIVERED = "undelivered"
    NOT_YOURS = "not_yours"
    EMPTY = "empty"
    RESOLVED = "resolved"
    TAKEN_OVER = "taken_over"
    NO_REASON = "no_reason"


def holds(view: CaseView, account: StaffAccount) -> bool:
    """True when `account` holds the claimed case: it alone may write to and resolve it
    (anyone else, an admin included, takes it over first, saying why)."""
    return view.status is CaseStatus.CLAIMED and account.actor().holds(view)


class CaseActions:
    """Claim, reply to and resolve cases for a signed-in staff member."""

    def __init__(self, cases: CaseService) -> None:
        self.cases = cases

    async def claim(self, case_id: int, account: StaffAccount) -> Notice:
        """Claim the case; a case another doctor holds is refused politely."""
        outcome, _view = await self.cases.claim(case_id, account.actor())
        return Notice(outcome.value)  # the notices include every ClaimOutcome

    async def reply(self, case_id: int, account: StaffAccount, text: str) -> Notice:
        """Send the patient a message from the doctor holding the case."""
        view = await self.cases.store.view(case_id)
        if view is None:
            return Notice.MISSING
        if not holds(view, account):
            return Notice.NOT_YOURS
        if not text.strip():
            return Notice.EMPTY
        delivered = await self.cases.reply(case_id, account.actor(), text[:MAX_REPLY_CHARS])
        # Kept in the transcript either way; the patient sees it when their channel is back.
        return Notice.REPLIED if delivered else Notice.UNDELIVERED

    async def resolve(
        self, case_id: int, account: StaffAccount, outcome: str, disposition: Disposition
    ) -> Notice:
        """Close the case with the doctor's outcome note."""
        view = await self.cases.store.view(case_id)
        if view is None:
            return Notice.MISSING
        if view.status not in (CaseStatus.OPEN, CaseStatus.CLAIMED):
            return Notice.CLOSED
        if not holds(view, account):
            return Notice.NOT_YOURS
        note = outcome.strip()[:MAX_OUTCOME_CHARS]
        done = await self.cases.resolve(case_id, account.actor(), note, disposition.value)
        return Notice.RESOLVED if done is not None else Notice.CLOSED

    async def take_over(self, case_id: int, account: StaffAccount, reason: str) -> Notice:
        """Take another doctor's claimed case, with a reason for the audit trail."""
        why = " ".join(reason.split())
        if not REASON_MIN <= len(why) <= REASON_MAX:
            return Notice.NO_REASON
        outcome, _view = await self.cases.take_over(case_id, account.actor(), why)
        return Notice.TAKEN_OVER if outcome is ClaimOutcome.CLAIMED else Notice(outcome.value)
