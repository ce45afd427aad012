"""CSRF tokens: every dashboard form carries one, and every POST is refused without it.

Signed-in forms carry the token stored with the sign-in. The login form, before there is a
sign-in, carries a random token that must match a cookie set with the form (double submit).
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Response

FIELD = "csrf_token"
LOGIN_COOKIE = "carebot_login_csrf"


def new_token() -> str:
    """Return a fresh unguessable token."""
    return secrets.token_urlsafe(32)


def matches(expected: str | None, given: str | None) -> bool:
    """Compare tokens in constant time; an empty token never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def set_login_cookie(response: Response, token: str, secure: bool) -> None:
    """Pair the login form's token with a cookie only this site can send back."""
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        path="/dashboard/login",
        httponly=True,
        samesite="strict",
        secure=secure,
    )
