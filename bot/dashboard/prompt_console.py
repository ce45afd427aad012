"""The operators' prompt console: drafts, checks, previews, diffs, publishing and rollback.

It works on the prompt store (bot/prompt_store.py) for the signed-in operator, whose drafts
are their own. Publishing starts from the version the draft was based on, never silently
from a newer one: when someone else published meanwhile, the store refuses and the operator
rebases on purpose (start again from the new version, or keep their text over it).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel

from bot.errors import CareBotError
from bot.prompt_approvals import ApprovalRequest, Reviewer
from bot.prompt_preview import SAMPLES, PreviewResult, PromptPreview
from bot.prompt_store import Draft, PromptStore, Version, diff
from bot.prompts import Sample

MAX_CONVERSATION_LINES = 20


class Editor(BaseModel):
    """What the editor shows: the operator's draft if they saved one, else the active text."""

    name: str
    purpose: str
    active: Version
    source: str
    base_version: int
    draft: Draft | None

    @property
    def stale(self) -> bool:
        """True when someone published a newer version after this draft's base."""
        return self.base_version != self.active.version


class Review(BaseModel):
    """What a reviewer sees of a change: the request, its diff against the version it was
    written for, and its safety-critical texts as patients would read them."""

    request: ApprovalRequest
    diff: list[DiffLine]
    samples: list[Sample]


class PromptRow(BaseModel):
    """One prompt on the list page."""

    name: str
    purpose: str
    active: Version
    draft: Draft | None


class LineKind(StrEnum):
    """How a line of a unified diff is coloured."""

    FILE = "file"
    HUNK = "hunk"
    ADDED = "add"
    REMOVED = "del"
    CONTEXT = "ctx"


class DiffLine(BaseModel):
    """One line of a unified diff with its kind."""

    kind: LineKind
    text: str


class Preview(BaseModel):
    """A preview's outcome: both outputs, or why there are none."""

    conversation: list[str]
    result: PreviewResult | None = None
    problems: list[str] = []
    error: str | None = None


def diff_lines(text: str) -> list[DiffLine]:
    """Split a unified diff into lines labelled for colouring."""
    lines = []
    for line in text.splitlines():
        if line.startswith(("---", "+++")):
            kind = LineKind.FILE
        elif line.startswith("@@"):
            kind = LineKind.HUNK
        elif line.startswith("+"):
            kind = LineKind.ADDED
        elif line.startswith("-"):
            kind = LineKind.REMOVED
        else:
            kind = LineKind.CONTEXT
        lines.append(DiffLine(kind=kind, text=line))
    return lines


def conversation_of(sample: str, typed: str) -> list[str]:
    """The typed conversation (one message per line) if any, else the chosen stock sample."""
    lines = [line.strip() for line in typed.splitlines() if line.strip()]
    return lines[:MAX_CONVERSATION_LINES] or SAMPLES.get(sample) or next(iter(SAMPLES.values()))


class PromptConsole:
    """The prompt store and the previewer, as the console's pages use them."""

    def __init__(self, store: PromptStore, preview: PromptPreview) -> None:
        self.store, self.previewer = store, preview

    @property
    def samples(self) -> list[str]:
        """The stock conversations' names."""
        return list(SAMPLES)

    def knows(self, name: str) -> bool:
        """True when `name` is one of the prompts."""
        return name in self.store.library.sources

    def purpose(self, name: str) -> str:
        """What the prompt is for, from its own header."""
        return self.store.library.purpose(name)

    async def overview(self, author: str) -> list[PromptRow]:
        """Every prompt with its active version and `author`'s draft, by name."""
        active = await self.store.active()
        return [
            PromptRow(
                name=name,
                purpose=self.purpose(name),
                active=active[name],
                draft=await self.store.draft(name, author),
            )
            for name in self.store.library.names()
            if name in active
        ]

    async def editor(self, name: str, author: str) -> Editor:
        """The editor for `author`: their saved draft, or the active version."""
        active = (await self.store.active())[name]
        draft = await self.store.draft(name, author)
        return Editor(
            name=name,
            purpose=self.purpose(name),
            active=active,
            source=draft.source if draft else active.source,
            base_version=draft.base_version if draft else active.version,
            draft=draft,
        )

    async def save(self, name: str, author: str, source: str, base_version: int) -> Editor:
        """Save `author`'s draft (browsers send CRLF line ends; the prompts use LF)."""
        text = source.replace("\r\n", "\n")
        await self.store.save_draft(name, author, text, base_version)
        return await self.editor(name, author)

    def problems(self, name: str, source: str) -> list[str]:
        """Why the draft cannot be published (empty: it can)."""
        return self.store.library.problems(name, source)

    async def preview(self, editor: Editor, conversation: list[str]) -> Preview:
        """Run the draft and the active version on `conversation`."""
        problems = self.problems(editor.name, editor.source)
        if problems:
            return Preview(conversation=conversation, problems=problems)
        try:
            result = await self.previewer.run(editor.name, editor.source, conversation)
        except CareBotError as exc:  # the model or the index is down: say so, keep the draft
            return Preview(conversation=conversation, error=str(exc))
        return Preview(conversation=conversation, result=result)

    def diff(self, editor: Editor) -> list[DiffLine]:
        """The draft against the active version, line by line (empty: no change)."""
        active = editor.active
        return diff_lines(
            diff(active.source, editor.source, f"version {active.version} (active)", "your draft")
        )

    async def publish(
        self, editor: Editor, author: str, note: str, author_key: str
    ) -> Version | ApprovalRequest:
        """Publish the saved draft from its base version (or, for a safety-critical change,
        ask for approval), then forget the draft; raises PublishRefused (the draft is kept)
        when invalid, stale or without a note."""
        outcome = await self.store.publish(
            editor.name, editor.source, author, note, editor.base_version, author_key
        )
        await self.store.discard_draft(editor.name, author)
        return outcome

    async def rebase(self, editor: Editor, author: str) -> Editor:
        """Keep the draft's text but base it on the active version: chosen after the diff."""
        return await self.save(editor.name, author, editor.source, editor.active.version)

    async def start_again(self, name: str, author: str) -> None:
        """Drop `author`'s draft: the editor opens on the active version."""
        await self.store.discard_draft(name, author)

    async def history(self, name: str) -> list[Version]:
        """Every version, newest first."""
        return await self.store.history(name)

    def changes(self, versions: list[Version], number: int) -> list[DiffLine]:
        """What version `number` changed from the version before it."""
        by_number = {v.version: v for v in versions}
        before = by_number.get(number - 1)
        if number not in by_number or before is None:
            return []
        return diff_lines(
            diff(
                before.source,
                by_number[number].source,
                f"version {before.version}",
                f"version {number}",
            )
        )

    async def rollback(
        self, name: str, version: int, author: str, note: str, author_key: str
    ) -> Version | ApprovalRequest:
        """Make version `version`'s text active again, as a new version (or ask for approval)."""
        return await self.store.rollback(name, version, author, note, author_key)

    async def waiting(self, name: str | None = None) -> list[ApprovalRequest]:
        """Changes waiting for approval."""
        return await self.store.reviews.requests(name)

    async def decided(self) -> list[ApprovalRequest]:
        """The latest decisions, newest first."""
        return await self.store.reviews.decided()

    async def review(self, request_id: int) -> Review | None:
        """One change as its reviewer sees it."""
        request = await self.store.reviews.request(request_id)
        if request is None:
            return None
        base = await self.store.version(request.name, request.base_version)
        before = base.source if base else ""
        samples: list[Sample] = []
        if request.name in self.store.library.groups:
            samples = self.store.library.render_texts(
                request.source, request.changes, self.previewer.engine.writer.emergency_number
            )
        return Review(
            request=request,
            diff=diff_lines(
                diff(before, request.source, f"version {request.base_version}", "the change")
            ),
            samples=samples,
        )

    async def approve(self, request_id: int, reviewer: Reviewer, note: str) -> Version:
        """Publish a waiting change (a second clinician or admin)."""
        return await self.store.reviews.approve(request_id, reviewer, note)

    async def reject(self, request_id: int, reviewer: Reviewer, note: str) -> ApprovalRequest:
        """Turn a waiting change down, with the reason."""
        return await self.store.reviews.reject(request_id, reviewer, note)

    async def withdraw(self, request_id: int, author_key: str) -> ApprovalRequest:
        """The author takes a waiting change back."""
        return await self.store.reviews.withdraw(request_id, author_key)
