"""Four eyes on guideline files: a page that nobody approved changes neither answers (the index)
nor triage (its criteria); one account proposes, another approves; an edit after approval is
a new proposal, and the old copy leaves the index meanwhile."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlmodel import Session, select

from bot.guideline_approvals import ApprovalRefused, GuidelineGate, decide, propose
from bot.storage.repository import Storage
from bot.storage.tables import AuditEvent, GuidelineApproval
from bot.triage.criteria import CriteriaBook
from rag.embeddings import MiniLMEmbeddings
from rag.index import GuidelineIndex
from rag.ingest import ingest
from rag.library import BUNDLED

EXTRA = Path(__file__).parent / "data" / "guideline_extra" / "hiccups.md"


def gate(storage: Storage) -> GuidelineGate:
    with Session(storage.engine) as s:
        return GuidelineGate.load(s)


def titles(index: GuidelineIndex) -> set[str]:
    return {e.path.rsplit("/", 1)[-1] for e in index.documents().values()}


def test_a_page_enters_index_and_criteria_only_after_a_second_account_approves(
    storage: Storage, tmp_path: Path, minilm: MiniLMEmbeddings
) -> None:
    folder = tmp_path / "guides"
    folder.mkdir()
    page = folder / "hiccups.md"
    shutil.copy(EXTRA, page)
    index = GuidelineIndex(tmp_path / "index", minilm.name, None)

    first = gate(storage)
    report = ingest([folder], index, minilm, admit=first.admit)
    assert report.count("unapproved") == 1 and titles(index) == set()
    assert CriteriaBook.load([folder], admit=first.admit).criteria == []
    assert CriteriaBook.load([BUNDLED], admit=first.admit).criteria  # the pack needs no one

    with Session(storage.engine) as s:
        (proposal,) = propose(s, first, "Sam (staff:2)", "staff:2")
        assert propose(s, first, "Sam (staff:2)", "staff:2") == [proposal]  # one per content
        with pytest.raises(ApprovalRefused, match="four eyes"):
            decide(s, proposal, True, "Sam (staff:2)", "staff:2", "looks fine")
        decide(s, proposal, True, "Dr Lee (staff:3)", "staff:3", "checked against NHS page")
        with pytest.raises(ApprovalRefused, match="decided already"):
            decide(s, proposal, False, "Dr Lee (staff:3)", "staff:3", "")

    approved = gate(storage)
    report = ingest([folder], index, minilm, admit=approved.admit)
    assert report.count("added") == 1 and titles(index) == {"hiccups.md"}
    rule_ids = [c.rule_id for c in CriteriaBook.load([folder], admit=approved.admit).criteria]
    assert rule_ids == ["hiccups/hiccups-over-two-days"]

    # Edited after approval (a criterion lowered, say): a new proposal; the approved copy
    # leaves the index rather than answer in the name of a page that no longer says it.
    page.write_text(page.read_text().replace("level: urgent", "level: routine"))
    edited = gate(storage)
    report = ingest([folder], index, minilm, admit=edited.admit)
    assert report.count("unapproved") == 1 and titles(index) == set()
    assert CriteriaBook.load([folder], admit=edited.admit).criteria == []

    with Session(storage.engine) as s:
        actions = [e.action for e in s.exec(select(AuditEvent))]
        rows = s.exec(select(GuidelineApproval)).all()
    assert actions.count("guideline.proposed") == 1 and "guideline.approved" in actions
    assert [r.status for r in rows] == ["approved"]
