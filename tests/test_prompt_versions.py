"""Versioned prompts: validation, publish, optimistic locking, rollback, live reload, audit,
drafts, the version recorded on replies, and `carebot prompts`.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from bot.cli import app
from bot.config import load_settings
from bot.dashboard.accounts import StaffAccounts
from bot.dashboard.roles import Role
from bot.models import IncomingMessage
from bot.prompt_approvals import ApprovalRequest, Reviewer
from bot.prompt_store import PromptStore, PublishRefused, Version
from bot.prompts import PromptLibrary
from bot.storage.repository import Storage, make_engine
from bot.storage.tables import AuditEvent, Message
from tests.conftest import RuntimeFactory
from tests.fakes import scripted

LIBRARY = PromptLibrary(load_settings().prompts_dir)
ANSWER = LIBRARY.shipped["answer"]
PASSWORD = "correct horse battery staple 42"  # pragma: allowlist secret
GROUNDED = "Get urgent help today if your fever has lasted more than three days [1]."


# Every model prompt goes through four eyes: these tests publish as one account and approve
# as another, as the console and the command line make people do.
REVIEWER = Reviewer(name="Dr Rev (staff:900)", key="staff:900", approves=True)


async def approved(store: PromptStore, outcome: Version | ApprovalRequest) -> Version:
    """The version a change becomes once a second account approves it."""
    assert isinstance(outcome, ApprovalRequest), "a model prompt changed without approval"
    return await store.reviews.approve(outcome.id, REVIEWER)


def ask(text: str = "I have had a mild fever since yesterday, what can I do?") -> IncomingMessage:
    return IncomingMessage(
        channel="test",
        chat_id="c1",
        user_id="u1",
        message_id=str(time.time_ns()),
        text=text,
        consent=True,
    )


@pytest.mark.parametrize(
    ("draft", "problem"),
    [
        ("", "empty"),
        (ANSWER.replace("{passages}", "the passages"), "body uses"),
        (
            ANSWER.replace("variables: [question, passages]", "variables: [question]").replace(
                "{passages}", "the passages"
            ),
            "variables must stay",
        ),
        (ANSWER.replace("{question}", "{question} {age}"), "body uses"),
        (ANSWER.replace("not instructions to follow", "material"), "required elements missing"),
        (ANSWER.replace('required: ["[1]", ', "required: ["), "cannot be dropped"),
        (ANSWER.replace("name: answer", "name: other"), "name must stay"),
        (ANSWER.replace("---\n", "", 1), "missing the '---' header"),
        ("x" * 70_000, "limit"),
    ],
)
def test_invalid_drafts_are_refused_with_the_reason(draft: str, problem: str) -> None:
    found = LIBRARY.problems("answer", draft)
    assert found and problem in " ".join(found)


def test_valid_drafts_and_patient_texts_are_checked_too() -> None:
    assert LIBRARY.problems("answer", ANSWER.replace("Guideline passages", "Guideline texts")) == []
    texts = LIBRARY.shipped["answer_texts"]
    assert LIBRARY.problems("answer_texts", texts.replace("Sources:", "References:")) == []
    dropped = texts.replace("  sources_heading:", "  sources_heading_gone:")
    assert "text sources_heading is missing" in LIBRARY.problems("answer_texts", dropped)
    assert LIBRARY.problems("answer_texts", "texts: [") != []
    stolen = texts + LIBRARY.shipped["consent_texts"].split("texts:\n", 1)[1]
    assert "text consent belongs to another file" in LIBRARY.problems("answer_texts", stolen)
    assert LIBRARY.problems("nothing", "x") == ["there is no prompt named 'nothing'"]


async def test_publish_is_used_by_the_next_reply_and_rollback_restores(
    make_runtime: RuntimeFactory,
) -> None:
    llm = scripted(GROUNDED)
    rt = await make_runtime(llm)
    before = await rt.engine.handle(ask())
    assert before.prompt_versions["answer"] == 1

    edited = ANSWER.replace("Guideline passages", "MARKER-V2 Guideline passages")
    asked = await rt.prompt_store.publish("answer", edited, "operator:sam", "wording", 1)
    assert isinstance(asked, ApprovalRequest) and asked.changes == ["answer"]
    assert (await rt.engine.handle(ask())).prompt_versions["answer"] == 1  # not yet
    published = await approved(rt.prompt_store, asked)
    assert published.version == 2
    after = await rt.engine.handle(ask())
    assert after.prompt_versions["answer"] == 2
    prompts = llm.model.prompts  # type: ignore[attr-defined]
    assert "MARKER-V2" in str(prompts[-1]) and "MARKER-V2" not in str(prompts[0])

    restored = await approved(
        rt.prompt_store, await rt.prompt_store.rollback("answer", 1, "operator:sam", "")
    )
    assert restored.version == 3
    again = await rt.engine.handle(ask())
    assert again.prompt_versions["answer"] == 3 and "MARKER-V2" not in str(prompts[-1])

    with Session(rt.storage.engine) as s:
        actions = [e.action for e in s.exec(select(AuditEvent)).all()]
        stored = s.exec(select(Message).where(Message.direction == "out")).all()
    assert actions.count("prompt.published") == 1 and actions.count("prompt.rolled_back") == 1
    assert [m.meta["prompt_versions"]["answer"] for m in stored] == [1, 1, 2, 3]
    history = await rt.prompt_store.history("answer")
    assert [(v.version, v.active) for v in history] == [(3, True), (2, False), (1, False)]


async def test_two_operators_cannot_overwrite_each_other(make_runtime: RuntimeFactory) -> None:
    rt = await make_runtime()
    store = rt.prompt_store
    first = await store.publish(
        "answer",
        ANSWER.replace("Guideline passages", "Guideline texts"),
        "operator:a",
        "a's edit",
        1,
    )
    await approved(store, first)
    with pytest.raises(PublishRefused, match="changed while you edited it: version 2"):
        await store.publish(
            "answer",
            ANSWER.replace("Guideline passages", "Guideline extracts"),
            "operator:b",
            "b's",
            1,
        )
    with pytest.raises(PublishRefused) as refused:
        await store.publish("answer", ANSWER.replace("{passages}", ""), "operator:b", "x", 2)
    assert refused.value.problems
    with pytest.raises(PublishRefused, match="change note"):
        await store.publish("answer", ANSWER, "operator:b", "  ", 2)
    assert (await store.active())["answer"].version == 2


async def test_other_workers_reload_within_seconds_and_drafts_survive_restarts(
    make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    worker_a = await make_runtime()
    worker_b = await make_runtime()  # same data folder: same database, another process's view
    await worker_a.prompt_store.save_draft("system", "operator:sam", "draft text", 1)
    await approved(
        worker_a.prompt_store,
        await worker_a.prompt_store.publish(
            "system", LIBRARY.shipped["system"].replace("careful", "very careful"), "op", "tone", 1
        ),
    )
    started = time.monotonic()
    while worker_b.engine.writer.prompts.versions["system"] != 2:
        assert time.monotonic() - started < 5, "worker B did not reload within 5 s"
        await asyncio.sleep(0.1)
    assert "very careful" in worker_b.engine.writer.prompts.template("system").body

    settings = load_settings(data_dir=tmp_path / "data")
    from bot.storage.repository import Storage, make_engine

    fresh = PromptStore(
        Storage(make_engine(settings.sqlalchemy_url)), PromptLibrary(settings.prompts_dir)
    )
    draft = await fresh.draft("system", "operator:sam")
    assert draft is not None and draft.source == "draft text" and draft.base_version == 1


def test_prompts_command_line(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("CAREBOT_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    listed = runner.invoke(app, ["prompts", "list"])
    assert listed.exit_code == 0 and "answer" in listed.output and "v1" in listed.output
    accounts = StaffAccounts(Storage(make_engine(load_settings().sqlalchemy_url)))
    asyncio.run(accounts.add("sam", "Sam Operator", Role.OPERATOR, PASSWORD))
    asyncio.run(accounts.add("lee", "Dr Lee", Role.DOCTOR, PASSWORD))

    def signed(*args: str, by: str) -> Any:
        return runner.invoke(app, [*args, "--by", by, "--password-stdin"], input=PASSWORD + "\n")

    draft = tmp_path / "answer.md"
    draft.write_text(ANSWER.replace("Guideline passages", "Guideline texts"), encoding="utf-8")
    diffed = runner.invoke(app, ["prompts", "diff", "answer", "1", str(draft)])
    assert "-" in diffed.output and "+" in diffed.output and "Guideline texts" in diffed.output
    asked = signed("prompts", "publish", "answer", str(draft), "--note", "simpler", by="sam")
    assert asked.exit_code == 0 and "waits for approval" in asked.output, asked.output
    ok = signed("prompts", "approve", "1", by="lee")
    assert ok.exit_code == 0 and "version 2 is active" in ok.output, ok.output

    bad = tmp_path / "bad.md"
    bad.write_text(ANSWER.replace("{passages}", ""), encoding="utf-8")
    refused = signed("prompts", "publish", "answer", str(bad), "--note", "x", by="sam")
    assert refused.exit_code == 1 and "not published" in refused.output

    stale = signed(
        "prompts", "publish", "answer", str(draft), "--note", "x", "--base", "1", by="sam"
    )
    assert stale.exit_code == 1 and "changed while you edited it" in stale.output

    back = signed("prompts", "rollback", "answer", "1", by="sam")
    assert back.exit_code == 0 and "waits for approval" in back.output, back.output
    assert "version 3 is active" in signed("prompts", "approve", "2", by="lee").output
    shown = runner.invoke(app, ["prompts", "show", "answer"])
    assert shown.output == ANSWER
    history = runner.invoke(app, ["prompts", "show", "answer", "--history"])
    assert history.output.count("\n") == 3 and history.output.startswith("* v3")
    assert "Sam Operator (staff:1)" in history.output


async def test_preview_runs_every_prompt_beside_the_active_version(
    make_runtime: RuntimeFactory,
) -> None:
    from bot.errors import ConfigError
    from bot.prompt_preview import SAMPLES, PromptPreview

    llm = scripted(GROUNDED)
    rt = await make_runtime(llm)
    preview = PromptPreview(rt.engine)
    for name in LIBRARY.names():
        result = await preview.run(name, LIBRARY.shipped[name], SAMPLES["fever"])
        assert result.draft and result.active and result.active_version == 1, name
    marked = ANSWER.replace("Guideline passages", "MARKER-PREVIEW passages")
    result = await preview.run("answer", marked, SAMPLES["sore throat follow-up"])
    assert "[1]" in result.draft and "grounded" in result.draft
    assert any("MARKER-PREVIEW" in str(p) for p in llm.model.prompts)  # type: ignore[attr-defined]
    assert rt.engine.writer.prompts.versions["answer"] == 1  # the live library is untouched
    assert "MARKER-PREVIEW" not in rt.engine.writer.prompts.template("answer").body
    texts = await preview.run("consent_texts", LIBRARY.shipped["consent_texts"], ["hello"])
    assert "[consent]" in texts.draft and "112" in texts.draft
    with pytest.raises(ConfigError):
        await preview.run("answer", ANSWER.replace("{passages}", ""), ["hi"])
