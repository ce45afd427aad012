"""Browsers a staff member has signed in from before ("known devices"), by a signed cookie.

Sign-in limits exist to stop guessing, but every limit shared with strangers is one a
stranger can use up: enough junk sign-ins from many addresses fill the overall limit, and
enough wrong passwords lock the account itself. A browser that completed a sign-in to an
account (password, and code with two-step sign-in) gets a cookie signed with the server's
key naming that account; a sign-in to the same account from that browser is counted on its
own (five wrong passwords per window), and neither the overall limit, the address's limit
nor the account's lock stands in its way. An attacker cannot lock a doctor out of the
browser they work in; stealing the cookie alone gives nothing without the password.
(OWASP, "Slow Down Online Guessing Attacks with Device Cookies".)
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from fastapi import Request, Response

from bot.signing import Signer, b64

COOKIE = "carebot_device"
SECURE_COOKIE = "__Host-carebot_device"
TTL_S = 90 * 24 * 3600


def cookie_name(request: Request) -> str:
    """The device cookie's name: `__Host-` prefixed over HTTPS."""
    return SECURE_COOKIE if request.url.scheme == "https" else COOKIE


class KnownDevices:
    """Issue device cookies and read them back."""

    def __init__(self, signer: Signer, clock: Callable[[], float] = time.time) -> None:
        self.signer, self.clock = signer, clock

    def issue(self, staff_id: int) -> str:
        """A new cookie value: this browser signed in to account `staff_id` now."""
        value = f"{staff_id}.{int(self.clock())}.{b64(secrets.token_bytes(12))}"
        return f"{value}.{self.signer.sign(value)}"

    def known(self, cookie: str | None) -> tuple[int, str] | None:
        """The account the cookie names and a key for counting this device's attempts, or
        None for a missing, forged or expired cookie."""
        if not cookie or len(cookie) > 200:
            return None
        value, _, signature = cookie.rpartition(".")
        if not value or not self.signer.valid(value, signature):
            return None
        staff, issued, raw = [*value.split("."), "", "", ""][:3]
        if not (staff.isdigit() and issued.isdigit()) or not raw:
            return None
        if self.clock() - int(issued) > TTL_S:
            return None
        return int(staff), raw

    def remember(self, response: Response, request: Request, staff_id: int) -> None:
        """Mark this browser as known to the account that just signed in."""
        response.set_cookie(
            cookie_name(request),
            self.issue(staff_id),
            max_age=TTL_S,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
