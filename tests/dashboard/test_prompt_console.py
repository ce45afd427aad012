"""The operators' prompt console over HTTP: list, drafts, validation, preview, diff, publish
(two operators on one prompt), history and rollback, and who may use it."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass

import httpx
import pytest

from bot.dashboard.prompt_console import PromptConsole
from bot.dashboard.roles import Role
from bot.prompt_approvals import Reviewer
from bot.prompt_preview import PromptPreview
from bot.prompt_store import PromptStore
from bot.prompts import PromptLibrary
from bot.storage.repository import Storage, make_engine
from tests.dashboard.live import LiveServer, csrf_of, sign_in

SOURCE = re.compile(r'<textarea id="source"[^>]*>\n(.*?)</textarea>', re.DOTALL)
BASE = re.compile(r'name="base_version" value="(\d+)"')


@dataclass
class Opened:
    """The editor as a browser has it: the form's fields and the page."""

    source: str
    base_version: int
    csrf_token: str
    page: str


class Operator:
    """A signed-in staff member using the console with plain HTTP, as the forms would."""

    def __init__(self, live: LiveServer, username: str, name: str, role: Role) -> None:
        self.account = live.add_staff(username, role, name)
        self.client, res = sign_in(live.url, username)
        assert res.status_code == 303, res.text
        self.landed = res.headers["location"]

    def open(self, prompt: str) -> Opened:
        res = self.client.get(f"/dashboard/prompts/{prompt}")
        assert res.status_code == 200, res.text
        return read_editor(res.text)

    def post(self, prompt: str, action: str, **data: str) -> httpx.Response:
        token = csrf_of(self.client.get("/dashboard/prompts").text)
        return self.client.post(
            f"/dashboard/prompts/{prompt}/{action}", data={"csrf_token": token, **data}
        )

    def submit(self, prompt: str, action: str, opened: Opened, **data: str) -> httpx.Response:
        """Press an editor button with `opened`'s base version and the given fields."""
        fields = {"source": opened.source, "base_version": str(opened.base_version), **data}
        return self.post(prompt, action, **fields)

    def follow(self, res: httpx.Response) -> str:
        assert res.status_code == 303, res.text
        page = self.client.get(res.headers["location"])
        assert page.status_code == 200
        return page.text


REVIEWER = Reviewer(name="Dr Rev (staff:900)", key="staff:900", approves=True)


def approve_waiting(live: LiveServer, res: httpx.Response) -> int:
    """Approve, as a second account, the change a publish just sent for approval (every model
    prompt waits for one); return the version it became."""
    assert res.status_code == 303, res.text
    found = re.search(r"/dashboard/approvals/(\d+)\?notice=requested", res.headers["location"])
    assert found, res.headers["location"]
    request_id = int(found.group(1))
    version = live.call(lambda rt: rt.prompt_store.reviews.approve(request_id, REVIEWER))
    return version.version


def read_editor(page: str) -> Opened:
    source, base = SOURCE.search(page), BASE.search(page)
    assert source and base, "the page has no editor"
    return Opened(html.unescape(source.group(1)), int(base.group(1)), csrf_of(page), page)


def text_of(page: str) -> str:
    """The page's words without markup, as a reader sees them."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def shipped(live: LiveServer, name: str) -> str:
    return live.runtime.prompt_store.library.shipped[name]


def versions(live: LiveServer, name: str) -> list[int]:
    return [v.version for v in live.call(lambda rt: rt.prompt_store.history(name))]


@pytest.fixture(scope="module")
def ann(live: LiveServer) -> Iterator[Operator]:
    operator = Operator(live, "ann", "Ann Operator", Role.OPERATOR)
    yield operator
    operator.client.close()


@pytest.fixture(scope="module")
def ben(live: LiveServer) -> Iterator[Operator]:
    operator = Operator(live, "ben", "Ben Operator", Role.OPERATOR)
    yield operator
    operator.client.close()


def test_an_operator_lands_on_the_list_of_every_prompt(live: LiveServer, ann: Operator) -> None:
    assert ann.landed == "/dashboard/prompts"
    page = ann.client.get("/dashboard/prompts").text
    library = live.runtime.prompt_store.library
    rows = re.findall(r'<tr data-prompt="([a-z_]+)">', page)
    assert rows == library.names()  # every prompt, by name
    answer = page.split('data-prompt="answer"', 1)[1].split("</tr>", 1)[0]
    assert library.templates["answer"].purpose.replace("'", "&#39;") in answer
    assert "v1" in answer and "prompts/ folder: shipped with CareBot" in answer
    texts = page.split('data-prompt="answer_texts"', 1)[1].split("</tr>", 1)[0]
    assert "The frame around guideline answers" in texts
    # Operators see the console in the menu, and no queue (they cannot read cases).
    assert 'href="/dashboard/prompts" aria-current="page">Prompts' in page
    assert ">Queue</a>" not in page


def test_drafts_are_saved_per_operator_and_listed(
    live: LiveServer, ann: Operator, ben: Operator
) -> None:
    edited = shipped(live, "condense").replace("standalone", "self-contained", 1)
    assert edited != shipped(live, "condense")
    page = ann.follow(ann.submit("condense", "draft", ann.open("condense"), source=edited))
    assert "Your draft is saved." in page
    reopened = read_editor(page)
    assert reopened.source == edited and reopened.base_version == 1
    assert "Your draft, saved" in page and "based on version 1" in page

    def row(page: str) -> str:
        return page.split('data-prompt="condense"', 1)[1].split("</tr>", 1)[0]

    assert "Draft saved" in row(ann.client.get("/dashboard/prompts").text)
    assert "Draft saved" not in row(ben.client.get("/dashboard/prompts").text)
    assert ben.open("condense").source == shipped(live, "condense")  # Ann's draft is hers
    assert versions(live, "condense") == [1]  # a draft is not published


def test_a_draft_survives_a_restart(live: LiveServer, ann: Operator) -> None:
    edited = shipped(live, "case_summary") + "\nKeep it short.\n"
    ann.follow(ann.submit("case_summary", "draft", ann.open("case_summary"), source=edited))
    # A CareBot started afresh on the same database opens the editor on the draft.
    library = PromptLibrary(live.settings.prompts_dir)
    engine = make_engine(live.settings.sqlalchemy_url)
    try:
        console = PromptConsole(
            PromptStore(Storage(engine), library), PromptPreview(live.runtime.engine)
        )
        editor = live.call(lambda _rt: console.editor("case_summary", ann.account.author))
    finally:
        engine.dispose()
    assert editor.draft is not None and editor.source == edited and editor.base_version == 1


def test_two_operators_on_one_prompt_cannot_overwrite_each_other(
    live: LiveServer, ann: Operator, ben: Operator
) -> None:
    original = shipped(live, "answer")
    a_text = original.replace("two to four short sentences", "two or three short sentences")
    b_text = original.replace("Patient's question", "The patient asks")
    a_opened, b_opened = ann.open("answer"), ben.open("answer")
    assert a_opened.base_version == b_opened.base_version == 1
    assert "v1</span> active" in b_opened.page

    published = ann.submit("answer", "publish", a_opened, source=a_text, note="shorter answers")
    assert "waits for a second person" in ann.follow(published)  # a model prompt: four eyes
    assert approve_waiting(live, published) == 2

    refused = ben.submit("answer", "publish", b_opened, source=b_text, note="friendlier")
    assert refused.status_code == 409
    words = text_of(refused.text)
    assert (
        "Not published: answer changed while you edited it: version 2 was published by "
        f"Ann Operator (staff:{ann.account.id}) ('shorter answers') after your version 1. "
        "Review the diff against version 2 and publish again."
    ) in words
    assert "Review the diff against version 2" in words
    assert "Start again from version 2" in words
    # The form keeps Ben's text and his base version: it does not jump to version 2 unseen.
    form = read_editor(refused.text)
    assert form.source == b_text and form.base_version == 1
    assert 'value="friendlier"' in refused.text  # his note too

    # Nothing was overwritten: Ann's version is active, in the store and in the running bot.
    active = live.call(lambda rt: rt.prompt_store.active())["answer"]
    assert active.version == 2 and active.source == a_text
    assert active.author == ann.account.author
    assert live.runtime.engine.writer.prompts.sources["answer"] == a_text
    # Ben's draft is kept, still based on version 1; the editor says what happened.
    reopened = ben.open("answer")
    assert reopened.source == b_text and reopened.base_version == 1
    assert "Version 2 was published after your version 1" in text_of(reopened.page)
    listed = ben.client.get("/dashboard/prompts").text.split('data-prompt="answer"', 1)[1]
    assert "based on v1; v2 is newer" in listed.split("</tr>", 1)[0]

    # He reviews the diff against version 2: his draft would undo Ann's change.
    diffed = ben.submit("answer", "diff", reopened).text
    assert "Diff against version 2" in diffed
    assert '<span class="add">+Using only the passages above, answer in two to four' in diffed
    assert '<span class="del">-Using only the passages above, answer in two or three' in diffed

    # ... and starts again from version 2: his draft is gone, the editor shows Ann's text.
    page = ben.follow(ben.post("answer", "start-again"))
    assert "Your draft is discarded" in page
    fresh = read_editor(page)
    assert fresh.source == a_text and fresh.base_version == 2
    assert versions(live, "answer") == [2, 1]


def test_an_operator_may_keep_their_text_over_a_newer_version_on_purpose(
    live: LiveServer, ann: Operator, ben: Operator
) -> None:
    original = shipped(live, "triage_repair")
    a_text, b_text = original + "\nA's line.\n", original + "\nB's line.\n"
    b_opened = ben.open("triage_repair")
    approve_waiting(
        live,
        ann.submit("triage_repair", "publish", ann.open("triage_repair"), source=a_text, note="a"),
    )
    assert (
        ben.submit("triage_repair", "publish", b_opened, source=b_text, note="b").status_code == 409
    )

    page = ben.follow(ben.submit("triage_repair", "rebase", b_opened, source=b_text))
    assert "Your draft is now based on version 2" in page
    rebased = read_editor(page)
    assert rebased.source == b_text and rebased.base_version == 2
    approve_waiting(
        live, ben.submit("triage_repair", "publish", rebased, note="b, after reading the diff")
    )
    active = live.call(lambda rt: rt.prompt_store.active())["triage_repair"]
    assert active.version == 3 and active.source == b_text


def test_validation_refuses_a_draft_that_drops_a_required_variable(
    live: LiveServer, ann: Operator
) -> None:
    opened = ann.open("answer")
    before = versions(live, "answer")
    broken = opened.source.replace("{passages}", "the passages")
    res = ann.submit("answer", "validate", opened, source=broken)
    assert res.status_code == 200
    words = text_of(res.text)
    assert "This draft cannot be published:" in words
    assert "body uses ['question'] but the header declares ['passages', 'question']" in words
    assert ann.open("answer").source == broken  # validating saved the draft

    refused = ann.submit("answer", "publish", opened, source=broken, note="try anyway")
    assert refused.status_code == 422
    words = text_of(refused.text)
    assert "Not published: the draft is not valid" in words and "body uses" in words
    assert "Your draft is kept" in words
    assert versions(live, "answer") == before

    fixed = opened.source.replace("short sentences", "short, plain sentences")
    ok = ann.submit("answer", "validate", opened, source=fixed)
    assert "The draft is valid:" in text_of(ok.text) and "cannot be published" not in ok.text
    no_note = ann.submit("answer", "publish", opened, source=fixed, note="  ")
    assert no_note.status_code == 422 and "a change note is required" in no_note.text
    assert versions(live, "answer") == before


def test_the_diff_colours_lines_and_escapes_prompt_text(live: LiveServer, ann: Operator) -> None:
    opened = ann.open("system")
    edited = opened.source.replace("plain, kind language", "plain, <b>kind</b> & {warm} language")
    res = ann.submit("system", "diff", opened, source=edited)
    assert res.status_code == 200
    line = "diagnose. You answer only from the guideline passages you are given, in plain, "
    assert f'<span class="del">-{line}kind language,</span>' in res.text
    escaped = "&lt;b&gt;kind&lt;/b&gt; &amp; {warm} language,"
    assert f'<span class="add">+{line}{escaped}</span>' in res.text
    assert "<b>kind</b>" not in res.text  # in the diff and in the textarea alike
    assert read_editor(res.text).source == edited

    # A browser sends its textarea with CRLF line ends: that alone is no change.
    same = ann.submit("system", "diff", opened, source=opened.source.replace("\n", "\r\n"))
    assert "Your draft is the same as version 1." in text_of(same.text)
    assert ann.open("system").source == opened.source


def test_preview_shows_the_draft_beside_the_active_version(live: LiveServer, ann: Operator) -> None:
    opened = ann.open("answer")
    marked = opened.source.replace("Guideline passages", "MARKER-CONSOLE Guideline passages")
    prompts = live.llm.model.prompts  # type: ignore[attr-defined]
    seen = len(prompts)
    res = ann.submit("answer", "preview", opened, source=marked, sample="fever", conversation="")
    assert res.status_code == 200
    words = text_of(res.text)
    assert "I have had a mild fever since yesterday, what can I do?" in words
    active = live.call(lambda rt: rt.prompt_store.active())["answer"]
    assert "Your draft" in words and f"Active: version {active.version}" in words
    assert res.text.count('<pre class="output">') == 2
    sent = [str(p) for p in prompts[seen:]]
    assert any("MARKER-CONSOLE" in p for p in sent)  # the draft went to the model ...
    assert any("MARKER-CONSOLE" not in p and "Guideline passages" in p for p in sent)  # and v.N
    assert "MARKER-CONSOLE" not in live.runtime.engine.writer.prompts.sources["answer"]

    typed = ann.submit(
        "answer",
        "preview",
        opened,
        source=marked,
        sample="fever",
        conversation="My throat is sore.\n\nShould I gargle <salt> water?\n",
    )
    assert "<li>My throat is sore.</li>" in typed.text
    assert "<li>Should I gargle &lt;salt&gt; water?</li>" in typed.text
    assert "I have had a mild fever" not in typed.text  # the typed lines replace the sample

    broken = ann.submit(
        "answer", "preview", opened, source=marked.replace("{question}", ""), sample="fever"
    )
    assert "This draft cannot be previewed: it is not valid." in text_of(broken.text)
    assert '<pre class="output">' not in broken.text


def test_history_shows_every_version_and_rolls_back(live: LiveServer, ann: Operator) -> None:
    original = shipped(live, "triage")
    edited = original + "\nBe brief.\n"
    approve_waiting(
        live,
        ann.submit("triage", "publish", ann.open("triage"), source=edited, note="<i>brief</i>"),
    )
    page = ann.client.get("/dashboard/prompts/triage/history").text
    assert re.findall(r'<tr data-version="(\d+)"', page) == ["2", "1"]
    assert 'data-version="2" class="current"' in page
    assert "&lt;i&gt;brief&lt;/i&gt;" in page and "<i>brief" not in page
    assert ann.account.author in page and "prompts/ folder" in page
    assert page.count('action="/dashboard/prompts/triage/rollback"') == 1  # not for the active
    assert 'name="version" value="1"' in page

    viewed = ann.client.get("/dashboard/prompts/triage/history?version=2").text
    assert "What version 2 changed" in viewed
    assert '<span class="add">+Be brief.</span>' in viewed
    shown = re.search(r'<pre class="output source">(.*?)</pre>', viewed, re.DOTALL)
    assert shown and html.unescape(shown.group(1)) == edited

    assert approve_waiting(live, ann.post("triage", "rollback", version="1", note="")) == 3
    after = ann.client.get("/dashboard/prompts/triage/history").text
    assert re.findall(r'<tr data-version="(\d+)"', after) == ["3", "2", "1"]
    assert "rollback to version 1" in after
    active = live.call(lambda rt: rt.prompt_store.active())["triage"]
    assert active.version == 3 and active.source == original
    assert live.runtime.engine.writer.prompts.versions["triage"] == 3

    missing = ann.post("triage", "rollback", version="99")
    assert (
        missing.status_code == 409 and "Not rolled back: triage has no version 99" in missing.text
    )


def test_an_unknown_prompt_is_not_found(ann: Operator) -> None:
    res = ann.client.get("/dashboard/prompts/nothing")
    assert res.status_code == 404 and "There is no prompt named &#39;nothing&#39;." in res.text
    posted = ann.post("nothing", "publish", source="x", base_version="1", note="x")
    assert posted.status_code == 404


def test_doctors_and_anonymous_users_cannot_publish(live: LiveServer) -> None:
    live.add_staff("doc", Role.DOCTOR, "Dr Doc")
    doctor, _ = sign_in(live.url, "doc")
    before = versions(live, "answer_texts")
    edited = shipped(live, "answer_texts").replace("Sources:", "References:")
    form = {"source": edited, "base_version": str(before[0]), "note": "x"}
    with closing(doctor), httpx.Client(base_url=live.url) as anonymous:
        token = csrf_of(doctor.get("/dashboard").text)
        res = doctor.post(
            "/dashboard/prompts/answer_texts/publish", data={**form, "csrf_token": token}
        )
        assert res.status_code == 403 and "only operators and admins can" in res.text
        queue = doctor.get("/dashboard").text
        assert ">Queue</a>" in queue and ">Prompts</a>" not in queue  # no link for doctors
        assert doctor.get("/dashboard/prompts").status_code == 403
        res = anonymous.post("/dashboard/prompts/answer_texts/publish", data=form)
        assert res.status_code == 401
        res = anonymous.get("/dashboard/prompts/answer_texts", follow_redirects=False)
        assert res.headers["location"] == "/dashboard/login?next=/dashboard/prompts/answer_texts"
    assert versions(live, "answer_texts") == before


def test_admins_use_both_the_queue_and_the_console(live: LiveServer) -> None:
    admin = Operator(live, "root", "Ada Admin", Role.ADMIN)
    with closing(admin.client):
        assert admin.landed == "/dashboard"
        page = admin.client.get("/dashboard/prompts").text
        assert ">Queue</a>" in page and ">Prompts</a>" in page
        assert "Guideline passages" in admin.open("answer").source
