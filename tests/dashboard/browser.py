"""Debian's Chromium driven by Playwright, for the dashboard's browser tests.

The `browser` and `page` fixtures (tests/dashboard/conftest.py) use these; a test module
marks itself with `pytestmark = pytest.mark.browser`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bot.config import REPO_ROOT
from tests.dashboard.live import PASSWORD, LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
WAIT_MS = 15_000


def browser_or_skip() -> None:
    """Skip (fail on CI) when Chromium or Playwright is missing."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (Debian package chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (the dev extra)")
    if missing:
        reason = f"the browser tests need {' and '.join(missing)}; `make test` installs them"
        if os.environ.get("CI") or os.environ.get("CAREBOT_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def sign_in(page: Page, live: LiveServer, username: str, path: str = "/dashboard") -> None:
    """Open `path`, get sent to the login form, and sign in (back to `path`)."""
    page.goto(f"{live.url}{path}")
    assert "/dashboard/login" in page.url  # not signed in yet: sent to the login form
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
