"""Four eyes on safety-critical texts, under /dashboard/approvals.

Every staff member may read the waiting changes; clinicians and admins approve or turn them
down (never their own). The store makes every check again; these routes only route.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bot.dashboard.guards import ApproverForm, Denied, StaffPage
from bot.dashboard.services import DashboardServices, services
from bot.dashboard.sessions import SignedIn
from bot.prompt_approvals import PublishRefused

router = APIRouter(prefix="/dashboard/approvals", include_in_schema=False)
Services = Annotated[DashboardServices, Depends(services)]
Note = Annotated[str, Form(max_length=500)]


class ReviewNotice(StrEnum):
    """The line shown above a change after a redirect (the words live in the template)."""

    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"


@router.get("")
async def approvals(svc: Services, who: StaffPage) -> HTMLResponse:
    return svc.pages.render(
        "approvals.html",
        page="approvals",
        events=None,
        who=who,
        title="Approvals",
        waiting=await svc.prompts.waiting(),
        decided=await svc.prompts.decided(),
    )


async def _review_page(
    svc: DashboardServices,
    who: SignedIn,
    request_id: int,
    notice: ReviewNotice | None = None,
    refused: PublishRefused | None = None,
) -> HTMLResponse:
    review = await svc.prompts.review(request_id)
    if review is None:
        raise Denied(404, f"There is no change numbered {request_id}.", who=who)
    return svc.pages.render(
        "approval.html",
        status=409 if refused else 200,
        page="approval",
        events=None,
        who=who,
        title=f"Change {request_id} to {review.request.name}",
        review=review,
        notice=notice,
        refused=refused,
        own=review.request.author_key == who.account.label,
    )


@router.get("/{request_id}")
async def review(
    svc: Services, who: StaffPage, request_id: int, notice: ReviewNotice | None = None
) -> HTMLResponse:
    return await _review_page(svc, who, request_id, notice)


@router.post("/{request_id}/approve")
async def approve(svc: Services, who: ApproverForm, request_id: int, note: Note = "") -> Response:
    try:
        await svc.prompts.approve(request_id, who.account.reviewer(), note)
    except PublishRefused as exc:
        return await _review_page(svc, who, request_id, refused=exc)
    return RedirectResponse(f"/dashboard/approvals/{request_id}?notice=approved", 303)


@router.post("/{request_id}/reject")
async def reject(svc: Services, who: ApproverForm, request_id: int, note: Note = "") -> Response:
    try:
        await svc.prompts.reject(request_id, who.account.reviewer(), note)
    except PublishRefused as exc:
        return await _review_page(svc, who, request_id, refused=exc)
    return RedirectResponse(f"/dashboard/approvals/{request_id}?notice=rejected", 303)
