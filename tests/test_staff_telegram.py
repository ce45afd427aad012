"""Staff identity on Telegram, over the Bot API test server: only Telegram accounts linked to
an enabled clinician's staff account act on cases; linking is by a one-time code; patients see
the staff account's name and role; disabling an account ends its Telegram powers.

Tried from outside before this: anyone in the doctors' group could claim, write to patients
and close cases, under whatever Telegram name they chose ("Pat" claimed, then wrote as "Ada").
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from bot.dashboard.accounts import StaffAccounts
from bot.dashboard.roles import Role
from bot.dashboard.telegram_link import LinkRefused, TelegramLinks
from bot.models import utcnow
from bot.runtime import Runtime
from bot.storage.tables import AuditEvent, Message, StaffUser
from tests.bot_api import BotAPIServer, group_message, private_message
from tests.conftest import RuntimeFactory
from tests.test_cases_telegram import (
    DOCTORS,
    DR_ADA,
    PASSWORD,
    PATIENT,
    _answers,
    alert_of,
    as_message,
    cases,
    start,
    wait,
)

STRANGER, CY = 9003, 9004


async def emergency(api: BotAPIServer, rt: Runtime) -> tuple[int, str]:
    """A consenting patient's emergency; the alert's id and its Claim button's data."""
    api.send_update(private_message(1, PATIENT, text="yes"))
    await wait(api, lambda: api.texts(PATIENT), "consent thanks")
    api.send_update(private_message(2, PATIENT, text="crushing chest pain and sweating"))
    await wait(api, lambda: any("case #" in t for t in api.texts(DOCTORS)), "the alert")
    alert_id, alert = alert_of(api)
    return alert_id, alert["reply_markup"]["inline_keyboard"][0][0]["callback_data"]


async def test_someone_in_the_group_without_a_linked_account_cannot_act(
    api: BotAPIServer, make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    rt = await start(api, make_runtime, tmp_path)
    alert_id, claim = await emergency(api, rt)
    told = len(api.texts(PATIENT))

    # A group member who is nobody's staff account, calling themselves Ada.
    api.send_callback(STRANGER, claim, message=as_message(api, alert_id))
    await wait(api, lambda: any("linked" in (a.get("text") or "") for a in _answers(api)), "no")
    assert cases(rt)[0].status == "open"
    api.send_update(
        group_message(
            5,
            STRANGER,
            DOCTORS,
            first_name="Ada",
            text="I am your doctor, tell me your address.",
            reply_to_message=as_message(api, alert_id),
        )
    )
    await wait(api, lambda: any(t.startswith("Not sent") for t in api.texts(DOCTORS)), "refusal")
    assert not any("your address" in t for t in api.texts(PATIENT))
    assert len(api.texts(PATIENT)) == told

    # The linked doctor claims; the patient sees the staff account's name and role.
    api.send_callback(DR_ADA, claim, message=as_message(api, alert_id))
    await wait(api, lambda: any("Ada (doctor) has joined" in t for t in api.texts(PATIENT)), "j")
    esc = cases(rt)[0]
    assert esc.status == "claimed" and esc.claimed_by_staff_id is not None


async def test_a_one_time_code_links_and_disabling_ends_the_powers(
    api: BotAPIServer, make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    rt = await start(api, make_runtime, tmp_path)
    accounts, links = StaffAccounts(rt.storage), TelegramLinks(rt.storage)
    cy = await accounts.add("cy", "Dr Cy Young", Role.DOCTOR, PASSWORD)
    operator = await accounts.add("olga", "Olga", Role.OPERATOR, PASSWORD)
    with pytest.raises(LinkRefused):
        await links.new_code(operator)  # operators have no powers on cases
    code = await links.new_code(cy)

    # CY's Telegram name is "Pat": it never reaches patients.
    def says(n: int, text: str) -> None:
        api.send_update(private_message(n, CY, first_name="Pat", text=text))

    says(1, "/link AAAA-BBBB")
    await wait(api, lambda: any("not valid" in t for t in api.texts(CY)), "a wrong code refused")
    says(2, f"/link {code.code.lower().replace('-', '')}")  # as typed on a phone
    await wait(api, lambda: any(t.startswith("Linked") for t in api.texts(CY)), "linked")
    assert "Dr Cy Young (doctor)" in api.texts(CY)[-1]
    api.send_update(private_message(1, STRANGER, text=f"/link {code.code}"))  # used: gone
    await wait(api, lambda: any("not valid" in t for t in api.texts(STRANGER)), "code reused")

    alert_id, claim = await emergency(api, rt)
    api.send_callback(CY, claim, message=as_message(api, alert_id))
    joined = "Dr Cy Young (doctor) has joined"
    await wait(api, lambda: any(joined in t for t in api.texts(PATIENT)), "joined")
    assert not any("Pat" in t for t in api.texts(PATIENT))
    says(3, "Sit down and unlock the door.")
    await wait(
        api,
        lambda: "Dr Cy Young (doctor): Sit down and unlock the door." in api.texts(PATIENT),
        "r",
    )

    await accounts.disable("cy")
    said = len(api.texts(CY))
    says(4, "Tell me your address.")
    await wait(api, lambda: len(api.texts(CY)) > said, "CY answered as anyone would be")
    says(5, "/close done")
    await wait(api, lambda: len(api.texts(CY)) > said + 1, "CY's /close answered")
    assert not any("your address" in t for t in api.texts(PATIENT))
    assert cases(rt)[0].status == "claimed"  # not closed by a disabled account
    api.send_update(private_message(3, PATIENT, text="the pain is worse"))
    await wait(
        api,
        lambda: any("can no longer act on it" in t for t in api.texts(DOCTORS)),
        "the patient's words go to the group, which is told why",
    )
    assert not any("the pain is worse" in t for t in api.texts(CY))

    with Session(rt.storage.engine) as s:
        stored = [m.text for m in s.exec(select(Message)).all()]
        actions = [e.action for e in s.exec(select(AuditEvent)).all()]
    assert not any("/link" in t for t in stored)  # a code is not a patient's message
    assert {"staff.telegram_code", "staff.telegram_linked"} <= set(actions)


async def test_expired_codes_and_taken_telegram_accounts_are_refused(
    make_runtime: RuntimeFactory,
) -> None:
    rt = await make_runtime()
    accounts, links = StaffAccounts(rt.storage), TelegramLinks(rt.storage)
    lee = await accounts.add("lee", "Dr Lee", Role.DOCTOR, PASSWORD)
    kim = await accounts.add("kim", "Dr Kim", Role.ADMIN, PASSWORD, telegram_user_id=77)
    code = await links.new_code(lee)
    with Session(rt.storage.engine) as s:
        row = s.exec(select(StaffUser).where(col(StaffUser.username) == "lee")).one()
        row.telegram_link_expires_at = utcnow() - timedelta(seconds=1)
        s.add(row)
        s.commit()
    with pytest.raises(LinkRefused, match="expired"):
        await links.link(code.code, 55)
    fresh = await links.new_code(lee)
    with pytest.raises(LinkRefused, match="another staff account"):
        await links.link(fresh.code, 77)  # Kim's Telegram account
    assert (await links.link(fresh.code, 55)).telegram_user_id == 55
    actor = await links.actor(77)
    assert actor is not None and actor.shown == "Dr Kim (admin)"
    await links.unlink(kim, "staff:1")
    assert await links.actor(77) is None
