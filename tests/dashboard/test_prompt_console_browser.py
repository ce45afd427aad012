"""The prompt console in a real browser: Debian's Chromium driven by Playwright.

An operator signs in, breaks the answer template and sees validation refuse it, makes a
valid edit, previews it beside the active version, publishes it, and the next patient is
answered with it; rolling back in the history restores the old behaviour. The run saves the
console's screenshots shown in the README (docs/screenshots/).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from langchain_core.messages import BaseMessage

from bot.dashboard.roles import Role
from bot.llm.base import LLMBackend
from tests.dashboard.browser import SCREENSHOTS, sign_in
from tests.dashboard.live import LiveServer, serving
from tests.fakes import ScriptedChatModel

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser
ADDED = "Finish with one sentence that says when to see a doctor."
QUESTION = "I have had a mild fever since yesterday, what can I do?"
PLAIN = "Rest, and drink plenty of fluids, such as water [1]."
ADVISED = f"{PLAIN} Get urgent help today if your fever has lasted more than three days [1]."


class InstructedChatModel(ScriptedChatModel):
    """A model that follows the added instruction: its answer shows which prompt it got."""

    def _next(self, messages: list[BaseMessage]) -> str:
        self.prompts.append(messages)
        return self.answers[1] if ADDED in str(messages) else self.answers[0]


@pytest.fixture(scope="module")
def model() -> InstructedChatModel:
    return InstructedChatModel(answers=[PLAIN, ADVISED], prompts=[])


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, guideline_index_dir: Path, model: InstructedChatModel
) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("prompt-console")
    with serving(folder, guideline_index_dir, LLMBackend(model)) as server:
        yield server


def prompts_since(model: InstructedChatModel, seen: int) -> list[str]:
    return [str(messages) for messages in model.prompts[seen:]]


def approve_as_a_doctor(browser: Browser, live: LiveServer, url: str, said: str) -> None:
    """A second person, a doctor in their own browser, reads the change and approves it."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        tab = context.new_page()
        sign_in(tab, live, "dora", url.removeprefix(live.url))
        tab.get_by_role("button", name="Approve and publish").click()
        expect(tab.locator("#notice")).to_contain_text(said)
    finally:
        context.close()


def test_an_operator_edits_previews_publishes_and_rolls_back_the_answer_prompt(
    live: LiveServer, page: Page, browser: Browser, model: InstructedChatModel
) -> None:
    from playwright.sync_api import expect

    live.add_staff("olga", Role.OPERATOR, "Olga Operator")
    live.add_staff("dora", Role.DOCTOR, "Dr Dora")
    sign_in(page, live, "olga", "/dashboard/prompts")
    expect(page).to_have_url(f"{live.url}/dashboard/prompts")
    page.locator('tr[data-prompt="answer"]').get_by_role("link", name="Edit").click()
    expect(page).to_have_url(f"{live.url}/dashboard/prompts/answer")
    expect(page.locator(".title .facts")).to_contain_text("v1 active")
    source = page.locator("#source")
    original = source.input_value()
    assert original == live.runtime.prompt_store.library.shipped["answer"]

    # Dropping a variable the code fills is refused, and says why.
    source.fill(original.replace("{passages}", "the passages"))
    page.get_by_role("button", name="Validate").click()
    validation = page.locator("#validation")
    expect(validation).to_contain_text("This draft cannot be published")
    expect(validation).to_contain_text("body uses ['question'] but the header declares")

    # A valid edit, previewed on a stock conversation beside the active version.
    edited = original.rstrip("\n") + f"\n{ADDED}\n"
    page.locator("#source").fill(edited)
    page.get_by_role("button", name="Validate").click()
    expect(validation).to_contain_text("The draft is valid")
    page.get_by_label("Sample conversation").select_option("fever")
    page.get_by_role("button", name="Preview").click()
    columns = page.locator("#preview .column")
    expect(columns).to_have_count(2)
    expect(page.locator("#preview ol.sample")).to_contain_text(QUESTION)
    expect(columns.nth(0)).to_contain_text("Your draft")
    expect(columns.nth(0)).to_contain_text(
        "Get urgent help today if your fever has lasted more than three days"
    )
    expect(columns.nth(1)).to_contain_text("Active: version 1")
    expect(columns.nth(1)).to_contain_text("Rest, and drink plenty of fluids")
    expect(columns.nth(1)).not_to_contain_text("more than three days")
    assert page.locator("#source").input_value() == edited  # the editor keeps the draft
    page.screenshot(path=SCREENSHOTS / "prompt-editor.png", full_page=True)

    # Publish with a note: the next patient is answered with version 2.
    page.get_by_label("Change note").fill("Tell patients when to see a doctor")
    page.get_by_role("button", name="Publish", exact=True).click()
    # A model prompt: it waits for a second person, and patients still get version 1.
    expect(page.locator("#notice")).to_contain_text("so it waits for a second person")
    expect(page.get_by_role("button", name="Approve and publish")).to_have_count(0)
    assert live.patient_says(QUESTION, "console-0", consent=True).prompt_versions["answer"] == 1
    approve_as_a_doctor(browser, live, page.url.split("?", 1)[0], "Approved: version 2 is active")
    page.goto(f"{live.url}/dashboard/prompts/answer")
    expect(page.locator(".title .facts")).to_contain_text("v2 active")
    seen = len(model.prompts)
    reply = live.patient_says(QUESTION, "console-1", consent=True)
    assert reply.prompt_versions["answer"] == 2
    assert any(ADDED in p for p in prompts_since(model, seen))
    assert "Get urgent help today if your fever has lasted more than three days" in reply.text

    # The history shows both versions; version 2's change is one added line.
    page.get_by_role("link", name="History").click()
    expect(page.locator("#versions tbody tr")).to_have_count(2)
    expect(page.locator('tr[data-version="2"]')).to_contain_text("active")
    expect(page.locator('tr[data-version="2"]')).to_contain_text("Olga Operator")
    page.locator('tr[data-version="2"]').get_by_role("link", name="View").click()
    expect(page.locator("#source .diff .add")).to_have_text([f"+{ADDED}"])
    page.screenshot(path=SCREENSHOTS / "prompt-history.png", full_page=True)

    # Roll back to version 1: the old behaviour is back, as version 3.
    row = page.locator('tr[data-version="1"]')
    row.get_by_role("textbox").fill("Answers got longer than we want")
    row.get_by_role("button", name="Roll back to v1").click()
    expect(page.locator("#notice")).to_contain_text("so it waits for a second person")
    approve_as_a_doctor(browser, live, page.url.split("?", 1)[0], "Approved: version 3 is active")
    page.goto(f"{live.url}/dashboard/prompts/answer/history")
    expect(page.locator('tr[data-version="3"]')).to_contain_text("Answers got longer")
    seen = len(model.prompts)
    reply = live.patient_says(QUESTION, "console-2", consent=True)
    assert reply.prompt_versions["answer"] == 3
    sent = prompts_since(model, seen)
    assert sent and not any(ADDED in p for p in sent)
    assert "Rest, and drink plenty" in reply.text and "more than three days" not in reply.text
