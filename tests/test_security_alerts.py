"""Administrators hear of security events by Telegram as they happen (not only on the security
page): from any process, once each, across a restart, never with a case's details, and one
administrator who blocked the bot does not hold the others up."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, select

from bot.channels.telegram import start_telegram
from bot.dashboard.accounts import StaffAccounts
from bot.dashboard.roles import Role
from bot.runtime import Runtime
from bot.storage.repository import Storage, audit_event
from bot.storage.tables import DeliveryCursor
from tests.bot_api import BotAPIServer
from tests.conftest import RuntimeFactory
from tests.fakes import scripted

PASSWORD = "correct horse battery staple 42"  # pragma: allowlist secret
ROOT, SAM, ADA, GONE = 9100, 9101, 9102, 9103


async def start(
    api: BotAPIServer, make_runtime: RuntimeFactory, tmp: Path, admins: bool = False
) -> Runtime:
    rt = await make_runtime(
        scripted("{}"),
        data_dir=tmp / "data",
        telegram_bot_token="123:TEST",
        telegram_api_base_url=api.base_url,
        dashboard_url="https://carebot.example.org",
        admin_alerts_s=0.1,
    )
    if admins:  # before the feed starts: their creation is history, not news
        accounts = StaffAccounts(rt.storage)
        await accounts.add("root", "Ada Root", Role.ADMIN, PASSWORD, telegram_user_id=ROOT)
        await accounts.add("sam", "Sam Admin", Role.ADMIN, PASSWORD, telegram_user_id=SAM)
        await accounts.add("ada", "Dr Ada", Role.DOCTOR, PASSWORD, telegram_user_id=ADA)
        await accounts.add("gone", "Old Admin", Role.ADMIN, PASSWORD, telegram_user_id=GONE)
        await accounts.disable("gone")
    await start_telegram(rt)
    return rt


async def feed_started(rt: Runtime, api: BotAPIServer) -> None:
    def started() -> bool:
        with Session(rt.storage.engine) as s:
            query = select(DeliveryCursor).where(DeliveryCursor.name == "admin_security_alerts")
            return s.exec(query).first() is not None

    assert await api.await_for(started, 10), "the feed never started"


def break_glass(storage: Storage, case_id: int) -> None:
    with Session(storage.engine) as s:
        s.add(
            audit_event(
                "staff:3", "case.break_glass", "escalation", str(case_id), reason="Mrs Quill's file"
            )
        )
        s.commit()


async def test_security_events_reach_every_enabled_admin_once(
    api: BotAPIServer, make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    rt = await start(api, make_runtime, tmp_path, admins=True)
    accounts = StaffAccounts(rt.storage)
    await feed_started(rt, api)
    api.block(SAM)  # Sam blocked the bot: Root still hears of everything

    await accounts.disable("ada", by="staff:1")
    break_glass(rt.storage, 42)

    assert await api.await_for(lambda: len(api.texts(ROOT)) >= 2, 20), api.texts(ROOT)
    first, second = api.texts(ROOT)[:2]
    assert "account disabled" in first and "ada (Dr Ada)" in first and "root (Ada Root)" in first
    assert "break-glass" in second and "case 42" in second
    assert "https://carebot.example.org/dashboard/security" in second
    assert "Quill" not in second  # the reason stays in the dashboard
    assert api.texts(ADA) == [] and api.texts(GONE) == []  # doctors and disabled admins: none

    await rt.aclose()
    break_glass(rt.storage, 43)  # written while no CareBot ran (the CLI, another process)
    rt2 = await start(api, make_runtime, tmp_path)
    assert await api.await_for(lambda: len(api.texts(ROOT)) >= 3, 20), api.texts(ROOT)
    assert "case 43" in api.texts(ROOT)[2]
    await rt2.aclose()
    assert len(api.texts(ROOT)) == 3  # nothing twice across the restart
    assert sum("account ada (Dr Ada)" in t for t in api.texts(ROOT)) == 1


async def test_with_no_admin_reachable_events_wait_instead_of_being_dropped(
    api: BotAPIServer, make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    rt = await start(api, make_runtime, tmp_path, admins=True)
    await feed_started(rt, api)
    api.block(ROOT)
    api.block(SAM)
    break_glass(rt.storage, 7)
    assert not await api.await_for(lambda: api.texts(ROOT), 1.0)
    api.unblock(ROOT)
    assert await api.await_for(lambda: api.texts(ROOT), 20), "held, then delivered"
    assert "case 7" in api.texts(ROOT)[0]
    await rt.aclose()
