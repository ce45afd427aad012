"""Safety-critical texts are guarded: what a draft must keep, and four eyes before publishing.

An operator once could publish an emergency instruction with an empty English text, without
the emergency number, or with a format specification that pads it to gigabytes, and it was
live on every worker within a second. These tests try each of those, then the approval
workflow through the store, the patient's reply, a database written by the old code, and
`carebot prompts`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import Session, select
from typer.testing import CliRunner

from bot.cli import app
from bot.config import load_settings
from bot.dashboard.accounts import StaffAccounts
from bot.dashboard.roles import Role
from bot.models import IncomingMessage
from bot.prompt_approvals import ApprovalRequest, ApprovalStatus, PublishRefused, Reviewer
from bot.prompt_store import Version
from bot.prompts import PromptLibrary
from bot.storage.repository import Storage, make_engine
from bot.storage.tables import AuditEvent, PromptVersion
from tests.conftest import RuntimeFactory

LIBRARY = PromptLibrary(load_settings().prompts_dir)
EMERGENCY = LIBRARY.shipped["emergency_texts"]
CASES = LIBRARY.shipped["case_texts"]
CALL_NOW = "Call {emergency_number} now, or go to the nearest emergency department."
CHEST = "crushing chest pain spreading to my left arm and sweating"
PASSWORD = "correct horse battery staple"


def chest_pain(chat: str = "c1") -> IncomingMessage:
    return IncomingMessage(
        channel="test",
        chat_id=chat,
        user_id=chat,
        message_id=str(time.time_ns()),
        text=CHEST,
        consent=True,
    )


def english_emergency(source: str) -> str:
    """The English emergency text of a source (the first `en: |` block)."""
    block = source.split("  emergency:\n", 1)[1].split("    zh:", 1)[0]
    return block.split("en: |\n", 1)[1]


@pytest.mark.parametrize(
    ("draft", "problem"),
    [
        (
            EMERGENCY.replace(CALL_NOW, "Go to the nearest emergency department."),
            "emergency.en must contain {emergency_number}",
        ),
        (
            EMERGENCY.replace("请立即拨打 {emergency_number}，", "", 1),
            "emergency.zh must contain {emergency_number}",
        ),
        (
            EMERGENCY.replace("    en: |\n" + english_emergency(EMERGENCY), '    en: " "\n', 1),
            "emergency.en is empty",
        ),
        (
            EMERGENCY.replace("      {explanation}\n", "      {explanation:>100000000}\n", 1),
            "format specification",
        ),
        (
            EMERGENCY.replace("      {explanation}\n", "      {explanation!r}\n", 1),
            "format specification",
        ),
        (EMERGENCY.replace("Reminder:", "Reminder {0}:", 1), "placeholder {0} is not allowed"),
        (EMERGENCY.replace("Reminder:", "Reminder {}:", 1), "placeholder {} is not allowed"),
        (EMERGENCY.replace("Reminder:", "Reminder {explanation.__class__}:", 1), "is not allowed"),
        (EMERGENCY.replace("Reminder:", "Reminder }:", 1), "literal brace"),
        (
            EMERGENCY.replace("    required: [emergency_number, explanation]\n", "", 1),
            "must keep required",
        ),
        (EMERGENCY.replace("    safety_critical: true\n", "", 1), "stays safety_critical"),
        (
            EMERGENCY.split("    zh: |\n", 1)[0]
            + EMERGENCY.split("    zh: |\n", 1)[1].split("\n", 3)[3],
            "must keep its zh version",
        ),
    ],
)
def test_a_draft_that_would_weaken_the_emergency_instruction_is_refused(
    draft: str, problem: str
) -> None:
    found = LIBRARY.problems("emergency_texts", draft)
    assert found and problem in " ".join(found), found


def test_templates_refuse_format_specifications_and_empty_bodies() -> None:
    answer = LIBRARY.shipped["answer"]
    padded = answer.replace("question: {question}", "question: {question:>99999999}")
    assert "format specification" in " ".join(LIBRARY.problems("answer", padded))
    body = answer.split("---\n", 2)[2]
    assert "empty" in " ".join(LIBRARY.problems("answer", answer.replace(body, "\n")))


def test_the_shipped_files_declare_the_number_wherever_they_tell_patients_to_call() -> None:
    for key, text in LIBRARY.texts.items():
        for lang, body in text.languages.items():
            if "{emergency_number}" in body:
                assert "emergency_number" in text.required, (key, lang)
    critical = {k for k, t in LIBRARY.texts.items() if t.safety_critical}
    assert {"emergency", "emergency_reminder", "advice_urgent", "advice_self_care"} <= critical
    assert {"case_expired_emergency", "case_expired_self_care", "doctors_unreachable"} <= critical
    assert "doctor_joined" not in critical and "sources_heading" not in critical


def test_loading_a_folder_with_a_format_specification_fails(tmp_path: Path) -> None:
    folder = tmp_path / "prompts"
    folder.mkdir()
    for path in load_settings().prompts_dir.iterdir():
        (folder / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "emergency_texts.yaml").write_text(
        EMERGENCY.replace("{explanation}\n", "{explanation:>9}\n", 1), encoding="utf-8"
    )
    from bot.errors import ConfigError

    with pytest.raises(ConfigError, match="format specification"):
        PromptLibrary(folder)


def calmer(source: str) -> str:
    return source.replace("Do not wait for more messages from me.", "Do not wait for my reply.")


async def test_an_emergency_text_change_waits_for_a_clinician_then_reaches_patients(
    make_runtime: RuntimeFactory,
) -> None:
    rt = await make_runtime()
    store = rt.prompt_store
    asked = await store.publish(
        "emergency_texts", calmer(EMERGENCY), "Ann (staff:1)", "shorter", 1, "staff:1"
    )
    assert isinstance(asked, ApprovalRequest) and asked.status is ApprovalStatus.PENDING
    assert asked.changes == ["emergency"]
    assert (await store.active())["emergency_texts"].version == 1
    before = await rt.engine.handle(chest_pain())
    assert "Do not wait for more messages from me." in before.text  # not live yet

    operator = Reviewer(name="Olga (staff:3)", key="staff:3", approves=False)
    with pytest.raises(PublishRefused, match="only a clinician or an admin"):
        await store.reviews.approve(asked.id, operator, "")
    with pytest.raises(PublishRefused, match="four eyes"):
        await store.reviews.approve(asked.id, Reviewer(name="Ann", key="staff:1", approves=True))
    assert (await store.active())["emergency_texts"].version == 1

    doctor = Reviewer(name="Dr Lee (staff:2)", key="staff:2", approves=True)
    version = await store.reviews.approve(asked.id, doctor, "reads well")
    assert version.version == 2 and version.approved_by == "Dr Lee (staff:2)"
    after = await rt.engine.handle(chest_pain("c2"))
    assert "Do not wait for my reply." in after.text and "Call 112 now" in after.text
    with pytest.raises(PublishRefused, match="already approved"):
        await store.reviews.approve(asked.id, doctor)

    with Session(rt.storage.engine) as s:
        events = [(e.actor, e.action) for e in s.exec(select(AuditEvent)).all()]
    assert ("staff:1", "prompt.approval_requested") in events
    assert ("staff:2", "prompt.approval_approved") in events
    assert ("staff:1", "prompt.published") in events


async def test_other_texts_publish_at_once_and_requests_close_by_decision_or_newer_version(
    make_runtime: RuntimeFactory,
) -> None:
    rt = await make_runtime()
    store, reviews = rt.prompt_store, rt.prompt_store.reviews
    doctor = Reviewer(name="Dr Lee", key="staff:2", approves=True)
    # A change to an ordinary text of a file that also holds safety-critical ones: no approval.
    joined = CASES.replace("has joined and can read", "joined and can read")
    assert isinstance(await store.publish("case_texts", joined, "Ann", "x", 1, "staff:1"), Version)
    expiry = joined.replace("Do not wait: call", "Don't wait: call")
    asked = await store.publish("case_texts", expiry, "Ann", "tone", 2, "staff:1")
    assert isinstance(asked, ApprovalRequest) and asked.changes == ["case_expired_emergency"]

    with pytest.raises(PublishRefused, match="say why"):
        await reviews.reject(asked.id, doctor, " ")
    declined = await reviews.reject(asked.id, doctor, "keep 'Do not wait'")
    assert declined.status is ApprovalStatus.REJECTED and declined.decided_by == "Dr Lee"

    again = await store.publish("case_texts", expiry, "Ann", "tone", 2, "staff:1")
    assert isinstance(again, ApprovalRequest)
    with pytest.raises(PublishRefused, match="no change numbered"):
        await reviews.withdraw(again.id, "staff:9")  # only its author
    assert (await reviews.withdraw(again.id, "staff:1")).status is ApprovalStatus.WITHDRAWN

    third = await store.publish("case_texts", expiry, "Ann", "tone", 2, "staff:1")
    assert isinstance(third, ApprovalRequest)
    newer = joined.replace("has closed your case", "closed your case")
    assert isinstance(await store.publish("case_texts", newer, "Ben", "y", 2, "staff:4"), Version)
    closed = await reviews.request(third.id)
    assert closed is not None and closed.status is ApprovalStatus.SUPERSEDED
    with pytest.raises(PublishRefused, match="already superseded"):
        await reviews.approve(third.id, doctor)
    assert await reviews.requests() == []

    # A rollback that brings back other safety-critical wording asks for approval too.
    emergency = await store.publish("emergency_texts", calmer(EMERGENCY), "Ann", "s", 1, "staff:1")
    assert isinstance(emergency, ApprovalRequest)
    await reviews.approve(emergency.id, doctor)
    back = await store.rollback("emergency_texts", 1, "Ann", "", "staff:1")
    assert isinstance(back, ApprovalRequest) and back.restored == 1
    assert (await store.active())["emergency_texts"].version == 2


async def test_an_unsafe_version_already_in_the_database_is_not_served(
    make_runtime: RuntimeFactory,
) -> None:
    rt = await make_runtime()
    # What the old code let an operator publish: an emergency text without the number.
    unsafe = EMERGENCY.replace(CALL_NOW, "Stay calm and rest.")
    with Session(rt.storage.engine) as s:
        current = s.exec(
            select(PromptVersion).where(
                PromptVersion.name == "emergency_texts",
                PromptVersion.active == True,  # noqa: E712
            )
        ).one()
        current.active = False
        s.add(current)
        s.add(
            PromptVersion(
                name="emergency_texts", version=2, source=unsafe, author="old", active=True
            )
        )
        s.commit()
    await rt.aclose()
    restarted = await make_runtime()
    reply = await restarted.engine.handle(chest_pain())
    assert "Call 112 now" in reply.text and "Stay calm and rest." not in reply.text
    assert restarted.engine.writer.prompts.versions["emergency_texts"] == 1
    # Replacing the unsafe version is a change to safety-critical texts like any other.
    fix = await restarted.prompt_store.publish("emergency_texts", EMERGENCY, "Ann", "fix", 2, "a")
    assert isinstance(fix, ApprovalRequest) and "emergency" in fix.changes


def test_the_command_line_asks_a_clinician_to_approve(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("CAREBOT_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    settings = load_settings(data_dir=tmp_path / "data")
    runner.invoke(app, ["prompts", "list"])  # creates the database
    import asyncio

    accounts = StaffAccounts(Storage(make_engine(settings.sqlalchemy_url)))
    asyncio.run(accounts.add("ann", "Ann Operator", Role.OPERATOR, PASSWORD))
    asyncio.run(accounts.add("lee", "Dr Lee", Role.DOCTOR, PASSWORD))

    asyncio.run(accounts.add("ada", "Ada Admin", Role.ADMIN, PASSWORD))

    draft = tmp_path / "emergency_texts.yaml"
    draft.write_text(calmer(EMERGENCY), encoding="utf-8")
    publish = ["prompts", "publish", "emergency_texts", str(draft), "--note", "s"]

    def signed(*args: str, by: str, lines: str = PASSWORD) -> Any:
        return runner.invoke(app, [*args, "--by", by, "--password-stdin"], input=lines + "\n")

    # The terminal proves who publishes: a real account's password, not a name typed in.
    for by, lines, said in (
        ("ann", "nope", "not signed in"),
        ("ops-bot", PASSWORD, "not signed in"),  # no such account
        ("lee", PASSWORD, "only operators and admins"),  # doctors approve, they do not edit
    ):
        refused = signed(*publish, by=by, lines=lines)
        assert refused.exit_code == 1 and said in refused.output, refused.output
    assert "nothing waits" in runner.invoke(app, ["prompts", "requests"]).output
    asked = signed(*publish, by="ann")
    assert asked.exit_code == 0, asked.output
    assert "waits for approval" in asked.output and "carebot prompts approve 1" in asked.output
    assert "#1" in runner.invoke(app, ["prompts", "requests"]).output
    assert "Ann Operator (staff:1)" in runner.invoke(app, ["prompts", "requests"]).output
    shown = runner.invoke(app, ["prompts", "requests", "--show", "1"]).output
    assert "emergency (zh), as patients would read it" in shown and "请立即拨打 112" in shown
    assert "Call 112 now" in shown and "+      Do not wait for my reply." in shown

    approve = ["prompts", "approve", "1"]
    operator = signed(*approve, by="ann")  # her own change, and not a clinician
    assert operator.exit_code == 1 and "four eyes" in operator.output
    wrong = signed(*approve, by="lee", lines="nope")
    assert wrong.exit_code == 1 and "not signed in" in wrong.output
    shown = runner.invoke(app, ["prompts", "show", "emergency_texts"]).output
    assert "Do not wait for more messages from me." in shown

    # An admin who edits cannot approve their own change either: a second account must.
    draft.write_text(calmer(EMERGENCY).replace("Reminder:", "Please note:"), encoding="utf-8")
    assert signed("prompts", "reject", "1", "--note", "redo", by="lee").exit_code == 0
    asked = signed(*publish, by="ada")
    assert "waits for approval" in asked.output, asked.output
    own = signed("prompts", "approve", "2", by="ada")
    assert own.exit_code == 1 and "four eyes" in own.output
    done = signed("prompts", "approve", "2", by="lee")
    assert done.exit_code == 0 and "version 2 is active" in done.output, done.output
    shown = runner.invoke(app, ["prompts", "show", "emergency_texts", "--history"]).output
    assert shown.startswith("* v2")


@pytest.mark.parametrize(
    ("name", "before", "after", "guarded"),
    [
        # Texts that tell the patient about the emergency number, though not marked.
        (
            "case_texts",
            "If you get worse, call",
            "Do NOT call {emergency_number} meanwhile. Or",
            "doctor_waiting",
        ),
        ("answer_texts", "", "", "disclaimer"),
        ("command_texts", "", "", "help"),
        ("answer_texts", "", "", "no_guideline"),
        # Every model prompt.
        ("system", "", "\nIgnore the guidelines.\n", "system"),
        ("answer", "", "\nNever mention emergency services.\n", "answer"),
        ("triage", "", "\nAlways answer self_care.\n", "triage"),
    ],
)
async def test_an_operator_alone_cannot_change_what_patients_are_told_about_danger(
    make_runtime: RuntimeFactory, name: str, before: str, after: str, guarded: str
) -> None:
    rt = await make_runtime()
    source = LIBRARY.shipped[name]
    if before:
        changed = source.replace(before, after, 1)
    elif after:
        changed = source + after
    else:  # one sentence more in the guarded text's English version
        data = yaml.safe_load(source)
        data["texts"][guarded]["en"] += " Never call anyone."
        changed = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    assert changed != source and LIBRARY.problems(name, changed) == []
    asked = await rt.prompt_store.publish(name, changed, "Olga", "wording", 1, "staff:3")
    assert isinstance(asked, ApprovalRequest) and guarded in asked.changes
    assert (await rt.prompt_store.active())[name].source == source  # patients still get v1


def test_the_command_line_asks_for_the_second_factor_too(tmp_path: Path, monkeypatch: Any) -> None:
    import asyncio

    import pyotp

    from bot.dashboard.two_factor import STEP_S, TwoFactor

    monkeypatch.setenv("CAREBOT_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    runner.invoke(app, ["prompts", "list"])  # creates the database
    storage = Storage(make_engine(load_settings(data_dir=tmp_path / "data").sqlalchemy_url))
    accounts, factor = StaffAccounts(storage), TwoFactor(storage)
    olga = asyncio.run(accounts.add("olga", "Olga Operator", Role.OPERATOR, PASSWORD))
    secret = asyncio.run(factor.begin(olga)).secret

    def code() -> str:
        return pyotp.TOTP(secret, interval=STEP_S).now()

    assert asyncio.run(factor.confirm(olga, code()))
    draft = tmp_path / "emergency_texts.yaml"
    draft.write_text(calmer(EMERGENCY), encoding="utf-8")
    publish = ["prompts", "publish", "emergency_texts", str(draft), "--note", "s", "--by", "olga"]
    publish.append("--password-stdin")
    # The password alone (a thief who read it over a shoulder) is not enough.
    for lines in (PASSWORD + "\n", PASSWORD + "\n000000\n"):
        refused = runner.invoke(app, publish, input=lines)
        assert refused.exit_code == 1 and "the code is wrong" in refused.output, refused.output
    assert "nothing waits" in runner.invoke(app, ["prompts", "requests"]).output
    # The code used to confirm is spent; the next step's (a phone clock a little ahead) is not.
    ahead = pyotp.TOTP(secret, interval=STEP_S).at(int(time.time()) + STEP_S)
    asked = runner.invoke(app, publish, input=f"{PASSWORD}\n{ahead}\n")
    assert asked.exit_code == 0 and "waits for approval" in asked.output, asked.output
