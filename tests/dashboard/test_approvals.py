"""Four eyes in the dashboard: an operator's change to the emergency instruction waits until a
clinician, reading it as patients would, approves it; nobody approves their own change."""

from __future__ import annotations

import re
from contextlib import closing

import httpx

from bot.dashboard.roles import Role
from tests.dashboard.live import LiveServer, csrf_of
from tests.dashboard.test_prompt_console import Operator, text_of, versions

CHEST = "crushing chest pain and sweating"
OLD = "Do not wait for more messages from me."
NEW = "Do not wait for my reply: act now."


def decide(staff: Operator, request_id: int, action: str, note: str = "") -> httpx.Response:
    token = csrf_of(staff.client.get(f"/dashboard/approvals/{request_id}").text)
    return staff.client.post(
        f"/dashboard/approvals/{request_id}/{action}", data={"csrf_token": token, "note": note}
    )


def test_an_emergency_text_change_waits_for_a_clinician(live: LiveServer) -> None:
    olga = Operator(live, "olga", "Olga Operator", Role.OPERATOR)
    lee = Operator(live, "lee", "Dr Lee", Role.DOCTOR)
    with closing(olga.client), closing(lee.client):
        opened = olga.open("emergency_texts")
        res = olga.submit(
            "emergency_texts", "publish", opened, source=opened.source.replace(OLD, NEW), note="act"
        )
        assert res.status_code == 303
        match = re.fullmatch(
            r"/dashboard/approvals/(\d+)\?notice=requested", res.headers["location"]
        )
        assert match, res.headers["location"]
        request_id = int(match.group(1))
        page = text_of(olga.follow(res))
        assert "waits for a second person: a clinician or an admin" in page
        assert "Version 1 stays active" in page and "Withdraw my change" in page
        assert versions(live, "emergency_texts") == [1]
        assert OLD in live.patient_says(CHEST, "p-before").text  # patients still get version 1
        editor = text_of(olga.client.get("/dashboard/prompts/emergency_texts").text)
        assert f"#{request_id} by {olga.account.author} (emergency) waits for approval" in editor

        refused = decide(olga, request_id, "approve")
        assert refused.status_code == 403 and "only clinicians and admins" in text_of(refused.text)

        listed = text_of(lee.client.get("/dashboard/approvals").text)
        assert f"#{request_id}" in listed and "Olga Operator" in listed
        review = lee.client.get(f"/dashboard/approvals/{request_id}").text
        shown = text_of(review)
        assert "As patients would read it" in shown
        assert f"Call 112 now, or go to the nearest emergency department. [explanation] {NEW}" in (
            shown
        )
        assert "请立即拨打 112" in shown and 'class="add">+' in review
        assert "Approve and publish" in shown

        declined = decide(lee, request_id, "reject")
        assert declined.status_code == 409 and "say why" in text_of(declined.text)
        approved = decide(lee, request_id, "approve", note="clearer")
        assert approved.headers["location"].endswith("?notice=approved")
        assert "Approved: version 2 is active." in text_of(lee.follow(approved))
        assert versions(live, "emergency_texts") == [2, 1]
        assert NEW in live.patient_says(CHEST, "p-after").text
        history = text_of(olga.client.get("/dashboard/prompts/emergency_texts/history").text)
        assert "act" in history


def test_an_admin_cannot_approve_their_own_change(live: LiveServer) -> None:
    ada = Operator(live, "ada", "Ada Admin", Role.ADMIN)
    with closing(ada.client), httpx.Client(base_url=live.url) as anonymous:
        before = versions(live, "level_advice")
        opened = ada.open("level_advice")
        edited = opened.source.replace("Please see a doctor today", "See a doctor today")
        res = ada.submit("level_advice", "publish", opened, source=edited, note="short")
        request_id = int(res.headers["location"].split("/")[-1].split("?")[0])
        own = decide(ada, request_id, "approve")
        assert own.status_code == 409 and "four eyes" in text_of(own.text)
        assert versions(live, "level_advice") == before
        withdrawn = ada.client.post(
            f"/dashboard/prompts/level_advice/requests/{request_id}/withdraw",
            data={"csrf_token": csrf_of(ada.client.get("/dashboard/approvals").text)},
        )
        assert "Your change is withdrawn" in text_of(ada.follow(withdrawn))
        gone = anonymous.get("/dashboard/approvals", follow_redirects=False)
        assert gone.headers["location"] == "/dashboard/login?next=/dashboard/approvals"
        assert anonymous.post(f"/dashboard/approvals/{request_id}/approve").status_code == 401
