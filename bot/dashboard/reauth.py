"""Asking a signed-in staff member to prove again who they are before a change to how their
account is reached: linking Telegram, turning two-step sign-in on or off, new recovery codes.

A sign-in cookie proves only that someone holds the cookie. These changes outlive it (a
Telegram link acts on cases for months; a second factor the thief set up locks the owner
out), so each asks for the password again and, where two-step sign-in is on, a current code.
Wrong answers count against the account exactly as wrong sign-ins do.
"""

from __future__ import annotations

from bot.dashboard.accounts import StaffAccount, StaffAccounts
from bot.dashboard.two_factor import TwoFactor

NOT_YOU = "your password is not right (or the account is locked for a while)"
WRONG_CODE = "the code from your app (or recovery code) is not right"


class Reauth:
    """Check a staff member's password, and code, once more."""

    def __init__(self, accounts: StaffAccounts, two_factor: TwoFactor) -> None:
        self.accounts, self.two_factor = accounts, two_factor

    async def refusal(
        self, account: StaffAccount, password: str, code: str, client: str = ""
    ) -> str | None:
        """None when `password` (and `code`, with two-step sign-in on) prove the account's
        owner is acting; otherwise what to tell them."""
        result = await self.accounts.authenticate(account.username, password, client, "reauth")
        if result.account is None or result.account.id != account.id:
            return NOT_YOU
        if result.account.two_factor and not await self.two_factor.verify(account, code, client):
            return WRONG_CODE
        return None
