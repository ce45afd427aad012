"""A CareBot web app on loopback per test module, and Chromium, for the dashboard's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.dashboard.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SCREENSHOTS,
    WAIT_MS,
    browser_or_skip,
)
from tests.dashboard.live import LiveServer, serving
from tests.fakes import scripted

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SUMMARY = (
    '{"chief_complaint": "Crushing central chest pain with sweating for 20 minutes", '
    '"history": "Started at rest; no known heart disease mentioned.", '
    '"open_questions": ["Age and cardiac history", "Is someone with the patient?"]}'
)


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, guideline_index_dir: Path
) -> Iterator[LiveServer]:
    """The web app with the dashboard; the LLM writes every case the same summary."""
    with serving(
        tmp_path_factory.mktemp("dashboard"), guideline_index_dir, scripted(SUMMARY)
    ) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, for one test module."""
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser tab (its own cookies) at 1280 x 860."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    yield tab
    context.close()
