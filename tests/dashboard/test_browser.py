"""The dashboard in a real browser: Debian's Chromium driven by Playwright.

A doctor signs in, watches a new case arrive on the queue without reloading, opens it,
claims it, sees the patient's next message arrive live, replies and resolves it. The run
saves the screenshots shown in the README (docs/screenshots/).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bot.dashboard.roles import Role
from tests.dashboard.browser import SCREENSHOTS, sign_in
from tests.dashboard.live import LiveServer, serving
from tests.fakes import scripted

if TYPE_CHECKING:
    from playwright.sync_api import Dialog, Page

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, guideline_index_dir: Path
) -> Iterator[LiveServer]:
    # A model that is down: summaries come from the triage record, each case its own.
    llm = scripted(fail_with="the model is offline in this test")
    with serving(tmp_path_factory.mktemp("browser"), guideline_index_dir, llm) as server:
        yield server


def wait_live(page: Page) -> None:
    """Wait until the page's event stream is connected."""
    page.locator('#live[data-state="on"]').wait_for()


def claim(page: Page) -> None:
    """Claim the open case, and wait until the page has re-read itself once its stream is up.

    After that, a new message can only reach the transcript through the live stream.
    """
    path = page.url.split("?")[0]
    with page.expect_response(lambda r: r.url == path and r.request.resource_type == "fetch"):
        page.get_by_role("button", name="Claim this case").click()
    wait_live(page)


def test_a_doctor_takes_a_case_from_the_live_queue_to_resolved(
    live: LiveServer, page: Page
) -> None:
    from playwright.sync_api import expect

    live.add_staff("ada", Role.DOCTOR, "Dr Ada Lovelace")
    to_patients = live.reach_patients("telegram")
    first = live.open_case("browser-1", "crushing chest pain and sweating for 20 minutes")
    urgent = live.open_case(
        "browser-2",
        "I'm 35, I've been vomiting for 2 days and can't keep fluids down",
        consent=True,
    )
    sign_in(page, live, "ada")
    expect(page).to_have_url(f"{live.url}/dashboard")
    rows = page.locator("table.cases tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-case", str(first))
    expect(rows.nth(1)).to_contain_text("urgent")
    wait_live(page)

    # A second emergency arrives while the page is open: it appears without a reload.
    page.evaluate("window.stillTheSamePage = true")
    stroke = live.open_case("browser-3", "my face is drooping and my speech is slurred")
    row = page.locator(f'tr[data-case="{stroke}"]')
    expect(row).to_contain_text("emergency")
    expect(row).to_contain_text("face is drooping")  # its summary, once written
    expect(rows).to_have_count(3)
    expect(rows.nth(2)).to_have_attribute("data-case", str(urgent))  # emergencies first
    assert page.evaluate("window.stillTheSamePage") is True
    page.set_viewport_size({"width": 1280, "height": 560})
    page.screenshot(path=SCREENSHOTS / "dashboard-queue.png")
    page.set_viewport_size({"width": 1280, "height": 860})

    # Open it, claim it.
    row.get_by_role("link", name=f"Open #{stroke}").click()
    expect(page).to_have_url(f"{live.url}/dashboard/cases/{stroke}")
    expect(page.locator("#transcript")).to_contain_text("my face is drooping")
    claim(page)
    expect(page.locator(".notice")).to_contain_text("You have claimed this case.")
    expect(page.locator("#case-head")).to_contain_text("claimed by Dr Ada Lovelace")
    assert any(chat == "browser-3" and "Dr Ada Lovelace" in text for chat, text in to_patients)

    # The patient writes again: the message appears on the open case page as it arrives.
    live.patient_says("I am alone at home and my arm feels weak", "browser-3")
    message = page.locator("#transcript li.patient").last
    expect(message).to_contain_text("I am alone at home and my arm feels weak")
    expect(message.locator("time")).to_have_text("just now")

    # Reply: it is in the transcript and stored as the doctor's message.
    reply = "Call 112 now and unlock your front door. Note the time the symptoms started."
    page.get_by_label("Message to the patient").fill(reply)
    page.get_by_role("button", name="Send to patient").click()
    expect(page.locator(".notice")).to_contain_text("Your message was sent to the patient.")
    expect(page.locator("#transcript li.doctor").last).to_contain_text(reply)
    expect(page.locator("#transcript li.doctor").last).to_contain_text("Dr Ada Lovelace")
    assert [m.text for m in live.doctor_messages(stroke)] == [reply]
    assert ("browser-3", f"Dr Ada Lovelace (doctor): {reply}") in to_patients
    wait_live(page)
    page.screenshot(path=SCREENSHOTS / "dashboard-case.png", full_page=True)

    # Resolve with an outcome: the case leaves the queue.
    page.get_by_label("Outcome note").fill("Patient called 112; ambulance on its way.")
    page.get_by_label("Disposition").select_option("referred_emergency")
    page.get_by_role("button", name="Resolve case").click()
    expect(page.locator(".notice")).to_contain_text("The case is resolved.")
    expect(page.locator("#case-head .status")).to_have_text("resolved")
    expect(page.locator("#audit")).to_contain_text("referred_emergency")
    page.get_by_role("link", name="← Queue").click()
    expect(page.locator(f'tr[data-case="{stroke}"]')).to_have_count(0)
    expect(rows).to_have_count(2)

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/dashboard/login$"))


def test_patient_markup_is_shown_as_text_and_never_runs(live: LiveServer, page: Page) -> None:
    from playwright.sync_api import expect

    live.add_staff("bo", Role.DOCTOR, "Dr Bo")
    attack = "crushing chest pain <img src=x onerror=\"document.title='pwned'\">"
    case_id = live.open_case("browser-xss", attack)
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    sign_in(page, live, "bo")
    page.goto(f"{live.url}/dashboard/cases/{case_id}")
    claim(page)
    # Also through the live stream, which the page adds to the transcript itself.
    live.patient_says("<script>alert('live')</script><b>still</b> hurts", "browser-xss")
    message = page.locator("#transcript li.patient").last
    expect(message.locator("time")).to_have_text("just now")
    expect(message).to_contain_text("<script>alert('live')</script><b>still</b> hurts")
    expect(page.locator("#transcript li.patient").first).to_contain_text("<img src=x onerror=")
    assert page.locator("#transcript img, #transcript script, #transcript b").count() == 0
    assert page.title() != "pwned" and dialogs == []


def test_securing_an_account_asks_for_the_password_again(live: LiveServer, page: Page) -> None:
    """Two-step sign-in, recovery codes and a Telegram link code each ask who is there."""
    import pyotp
    from playwright.sync_api import expect

    from bot.dashboard.two_factor import STEP_S
    from tests.dashboard.live import PASSWORD

    live.add_staff("rhea", Role.DOCTOR, "Dr Rhea")
    sign_in(page, live, "rhea", "/dashboard/account")
    setup = page.locator('form[action="/dashboard/account/2fa/begin"]')
    setup.get_by_label("Your password").fill("someone else's guess")
    setup.get_by_role("button", name="Set up two-step sign-in").click()
    expect(page.locator("#notice")).to_contain_text("your password is not right")
    setup = page.locator('form[action="/dashboard/account/2fa/begin"]')
    setup.get_by_label("Your password").fill(PASSWORD)
    setup.get_by_role("button", name="Set up two-step sign-in").click()
    secret = page.locator("#totp-key").inner_text().replace(" ", "")
    totp = pyotp.TOTP(secret, interval=STEP_S)
    page.get_by_label("Code", exact=True).fill(totp.now())
    page.get_by_role("button", name="Turn on").click()
    expect(page.locator("#notice")).to_contain_text("Two-step sign-in is on")
    expect(page.locator("#recovery-codes pre")).to_contain_text("-")
    page.screenshot(path=SCREENSHOTS / "account-recovery-codes.png", full_page=True)

    # A link code for Telegram: password and a code from the app (the next one: each once).
    page.goto(f"{live.url}/dashboard/telegram")
    form = page.locator('form[action="/dashboard/telegram/code"]')
    form.get_by_label("Your password").fill(PASSWORD)
    form.get_by_label("Code from your app").fill("000000")
    form.get_by_role("button", name="Create a link code").click()
    expect(page.locator("#notice")).to_contain_text("code from your app")
    form = page.locator('form[action="/dashboard/telegram/code"]')
    form.get_by_label("Your password").fill(PASSWORD)
    form.get_by_label("Code from your app").fill(totp.at(int(time.time()) + STEP_S))
    form.get_by_role("button", name="Create a link code").click()
    expect(page.locator("#code")).to_contain_text("/link ")
