"""`carebot ingest`, `carebot guidelines requests|show|approve|reject`, `carebot index
stats|drop`, `carebot ask`, `carebot eval retrieval`.

Guideline files other than the bundled pack enter the index only when approved by a second
staff account (bot/guideline_approvals.py): `carebot ingest PATH --by OPERATOR` proposes
them, `carebot guidelines approve ID --by CLINICIAN` approves, and the next `carebot ingest`
(or start) takes them in.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.dashboard.accounts import StaffAccount
    from bot.storage.repository import Storage
    from rag.ingest import FileOutcome, IngestReport
    from rag.library import GuidelineLibrary

index_app = typer.Typer(help="Look after the guideline index.", no_args_is_help=True)
guidelines_app = typer.Typer(
    help="Four eyes on guideline files: proposals waiting for approval.", no_args_is_help=True
)
_Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
_PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password (and then the two-step code) from standard input.",
    ),
]


def _open(settings: Settings, index_dir: Path | None = None) -> GuidelineLibrary:
    from rag.errors import IndexUnavailable
    from rag.library import GuidelineLibrary

    try:
        return GuidelineLibrary.open(settings, index_dir)
    except IndexUnavailable as exc:
        typer.echo(f"carebot: {exc}", err=True)
        raise typer.Exit(1) from exc


class _Bar:
    """A tqdm progress bar on a terminal; silence when output goes to a file or pipe."""

    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, total: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit="file", disable=not sys.stderr.isatty(), file=sys.stderr)

    def advance(self, outcome: FileOutcome) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(outcome.status, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _summary(report: IngestReport) -> str:
    lines = [
        f"added {report.count('added')}, updated {report.count('updated')}, "
        f"unchanged {report.count('unchanged')}, removed {report.count('removed')}, "
        f"duplicates {report.count('duplicate')}, failed {report.count('failed')}"
        + (f", unapproved {report.count('unapproved')}" if report.count("unapproved") else "")
        + (f", ignored {report.ignored} unsupported" if report.ignored else ""),
        f"chunks: +{report.chunks_added} -{report.chunks_removed}; index now holds "
        f"{report.documents_in_index} documents, {report.chunks_in_index} chunks",
        f"{report.seconds:.1f} s, peak memory {report.peak_memory_mb:.0f} MB",
    ]
    for f in report.files:
        if f.status in ("failed", "duplicate"):
            lines.append(f"  {f.status}: {f.path}: {f.reason}")
        for warning in f.warnings:
            lines.append(f"  warning: {f.path}: {warning}")
    return "\n".join(lines)


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Guideline files or folders.")],
    by: Annotated[
        str | None,
        typer.Option(
            "--by", help="Your staff username (operator or admin): propose unapproved files."
        ),
    ] = None,
    password_stdin: _PasswordStdin = False,
    as_json: _Json = False,
) -> None:
    """Add approved guideline files (Markdown, text, HTML, PDF, MedQuAD XML) to the index.

    Unchanged files are skipped, changed ones replaced, files gone from an ingested folder
    removed. A file that cannot be read is reported and skipped. A file nobody approved is
    left out (and taken out if an earlier copy was in); with --by it is proposed for a
    clinician's approval.
    """
    from bot.cli import _settings
    from bot.guideline_approvals import GuidelineGate, ingested, propose

    settings = _settings()
    storage = _storage(settings)
    account = _signed_in(storage, by, password_stdin, proposes=True) if by else None
    gate = asyncio.run(storage.run(GuidelineGate.load))
    library = _open(settings)
    bar = _Bar()
    try:
        report = library.ingest(paths, bar, admit=gate.admit)
    finally:
        bar.close()
    actor = account.label if account else "cli"
    if report.changed:
        added, updated, removed = (report.count(k) for k in ("added", "updated", "removed"))
        asyncio.run(storage.run(lambda s: ingested(s, actor, added, updated, removed)))
    proposed: list[int] = []
    if account is not None and gate.refused:
        proposed = asyncio.run(
            storage.run(lambda s: propose(s, gate, account.author, account.label))
        )
    storage.engine.dispose()
    typer.echo(report.model_dump_json(indent=2) if as_json else _summary(report))
    if proposed:
        typer.echo(
            f"{len(proposed)} file(s) wait for a clinician's approval "
            f"(proposals {', '.join(map(str, proposed))}): carebot guidelines show ID, then "
            "carebot guidelines approve ID --by USERNAME (another account than yours); "
            "run carebot ingest again after approval",
            err=as_json,
        )
    elif gate.refused:
        typer.echo(
            f"{len(gate.refused)} file(s) are not approved and were left out: propose them "
            "with --by USERNAME (an operator or admin)",
            err=as_json,
        )
    raise typer.Exit(1 if report.count("failed") and not report.changed else 0)


def _storage(settings: Settings) -> Storage:
    from bot.storage.migrate import upgrade
    from bot.storage.repository import Storage, make_engine

    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    return Storage(engine)


def _signed_in(
    storage: Storage, username: str, password_stdin: bool, proposes: bool
) -> StaffAccount:
    """An operator or admin proposing files, or a clinician or admin deciding them."""
    from bot.dashboard.terminal_sign_in import fail, sign_in

    account = sign_in(storage, username, password_stdin)
    if proposes and not account.edits_prompts:
        raise fail("only operators and admins propose guideline files; clinicians approve them")
    if not proposes and not account.approves_safety_texts:
        raise fail("only clinicians and admins approve guideline files")
    return account


@guidelines_app.command("requests")
def requests() -> None:
    """List guideline files that wait for approval."""
    from bot.cli import _settings
    from bot.guideline_approvals import pending

    storage = _storage(_settings())
    rows = asyncio.run(storage.run(pending))
    storage.engine.dispose()
    if not rows:
        typer.echo("no guideline file waits for approval")
    for r in rows:
        typer.echo(
            f"{r.id:>5}  {r.path}  sha256 {r.digest[:12]}  by {r.proposed_by}  "
            f"{r.proposed_at:%Y-%m-%d %H:%M}"
        )


@guidelines_app.command("show")
def show(approval_id: int) -> None:
    """Print what a proposal would add: the file's title, sources and text, and its triage
    criteria, read from the file as it is now (refused when it changed since)."""
    from sqlmodel import Session

    from bot.cli import _settings
    from bot.guideline_approvals import digest
    from bot.storage.tables import GuidelineApproval
    from rag.loaders import parse, read_file

    storage = _storage(_settings())
    with Session(storage.engine) as s:
        row = s.get(GuidelineApproval, approval_id)
    storage.engine.dispose()
    if row is None:
        typer.echo(f"carebot: no guideline proposal {approval_id}", err=True)
        raise typer.Exit(1)
    path = Path(row.path)
    try:
        data = read_file(path)
        doc = parse(path, data)
    except Exception as exc:  # gone, unreadable: the reviewer is told, nothing is approved
        typer.echo(f"carebot: {row.path} cannot be read ({type(exc).__name__})", err=True)
        raise typer.Exit(1) from exc
    if digest(data) != row.digest:
        typer.echo(f"carebot: {row.path} changed since it was proposed; propose it again", err=True)
        raise typer.Exit(1)
    typer.echo(f"proposal {row.id} ({row.status}) by {row.proposed_by}: {row.path}")
    typer.echo(f"title: {doc.title}\nsource: {doc.source}  {' '.join(doc.urls or [doc.url or ''])}")
    for section in doc.sections:
        typer.echo(f"\n## {section.heading}\n{section.text}")
    if path.suffix.lower() == ".md":
        from bot.triage.criteria import CriteriaBook

        for c in CriteriaBook.load([path]).criteria:
            typer.echo(f"\ncriterion {c.rule_id} ({c.spec.level}): {c.spec.finding}")


def _decide(approval_id: int, approve: bool, by: str, note: str, password_stdin: bool) -> None:
    from bot.cli import _settings
    from bot.dashboard.terminal_sign_in import fail
    from bot.guideline_approvals import ApprovalRefused, decide

    storage = _storage(_settings())
    try:
        account = _signed_in(storage, by, password_stdin, proposes=False)
        row = asyncio.run(
            storage.run(
                lambda s: decide(s, approval_id, approve, account.author, account.label, note)
            )
        )
    except ApprovalRefused as exc:
        raise fail(str(exc)) from exc
    finally:
        storage.engine.dispose()
    if approve:
        typer.echo(
            f"proposal {approval_id} approved: {row.path} enters the index at the next "
            f"carebot ingest or start"
        )
    else:
        typer.echo(f"proposal {approval_id} rejected: {row.path} stays out")


@guidelines_app.command("approve")
def approve(
    approval_id: int,
    by: Annotated[str, typer.Option("--by", help="Your staff username (clinician or admin).")],
    note: Annotated[str, typer.Option("--note", help="What you checked.")] = "",
    password_stdin: _PasswordStdin = False,
) -> None:
    """Approve a proposed guideline file (another account than the one that proposed it)."""
    _decide(approval_id, True, by, note, password_stdin)


@guidelines_app.command("reject")
def reject(
    approval_id: int,
    by: Annotated[str, typer.Option("--by", help="Your staff username (clinician or admin).")],
    note: Annotated[str, typer.Option("--note", help="Why.")] = "",
    password_stdin: _PasswordStdin = False,
) -> None:
    """Reject a proposed guideline file: it stays out of the index and the criteria."""
    _decide(approval_id, False, by, note, password_stdin)


@index_app.command("stats")
def stats(as_json: _Json = False) -> None:
    """Show what the guideline index holds."""
    from bot.cli import _settings

    info = _open(_settings()).index.stats()
    if as_json:
        typer.echo(info.model_dump_json(indent=2))
        return
    typer.echo(f"index: {info.location} ({info.embedding_model})")
    typer.echo(f"documents: {info.documents}, chunks: {info.chunks}")
    typer.echo("languages: " + ", ".join(f"{k} {v}" for k, v in info.languages.items()))
    typer.echo("sources: " + ", ".join(f"{k} {v}" for k, v in list(info.sources.items())[:10]))


@index_app.command("drop")
def drop(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete every document from the guideline index."""
    from bot.cli import _settings

    library = _open(_settings())
    if not yes and not typer.confirm(f"Delete all {library.index.count()} chunks?"):
        raise typer.Exit(1)
    library.index.drop()
    typer.echo("index dropped; `carebot ingest PATH` or the next start fills it again")


def ask(
    question: Annotated[str, typer.Argument(help="The question (quote it).")],
    as_json: _Json = False,
) -> None:
    """Answer a question from the guidelines: answer, citations, chunks and scores."""
    from bot.cli import _settings
    from bot.llm.factory import build_llm
    from bot.prompts import PromptLibrary
    from rag.answer import GuidelineAnswerer

    settings = _settings()
    library = _open(settings)
    if library.index.count() == 0:
        from bot.guideline_approvals import start_up_gate

        gate = start_up_gate(settings)
        library.ingest(library.start_up_paths(), admit=gate.admit if gate else None)

    async def run() -> Any:
        llm = build_llm(settings)
        try:
            answerer = GuidelineAnswerer(
                library.retriever, llm, PromptLibrary(settings.prompts_dir), k=settings.retrieval_k
            )
            return await answerer.answer(question, [], settings.default_language)
        finally:
            await llm.aclose()

    answer = asyncio.run(run())
    if as_json:
        typer.echo(answer.model_dump_json(indent=2))
        return
    typer.echo(answer.text or "No relevant guideline found.")
    for c in answer.citations:
        typer.echo(f"[{c.number}] {c.title} - {c.section} ({c.source}; {c.path})")
    typer.echo("\nretrieved:")
    for hit in answer.hits:
        typer.echo(
            f"  {hit.similarity:.3f} cos  rrf {hit.score:.4f}  dense#{hit.dense_rank} "
            f"bm25#{hit.lexical_rank}  {hit.chunk.title} - {hit.chunk.section}"
        )


def eval_retrieval(
    medquad: Annotated[Path, typer.Option("--medquad", help="A MedQuAD folder.")],
    sample: Annotated[int, typer.Option("--sample", help="Questions to sample (0 = all).")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 7,
    index_dir: Annotated[
        Path | None, typer.Option("--index-dir", help="Index folder; default data/eval-medquad.")
    ] = None,
    as_json: _Json = False,
) -> None:
    """Index a MedQuAD folder, then check each sampled question finds its own document."""
    from bot.cli import _settings
    from rag.evaluate import evaluate_retrieval, format_retrieval, medquad_questions

    if not medquad.is_dir():
        typer.echo(f"carebot: {medquad} is not a folder", err=True)
        raise typer.Exit(2)
    settings = _settings()
    library = _open(settings, index_dir or settings.data_dir / "eval-medquad")
    bar = _Bar()
    try:
        ingested = library.ingest([medquad], bar)
    finally:
        bar.close()
    report = evaluate_retrieval(library.retriever, medquad_questions(medquad), sample or None, seed)
    if as_json:
        typer.echo(
            json.dumps({"ingest": ingested.model_dump(exclude={"files"}), **report.model_dump()})
        )
        return
    typer.echo(_summary(ingested) + "\n")
    typer.echo(format_retrieval(report))


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    """Add the guideline commands to the `carebot` CLI."""
    app.command()(ingest)
    app.command()(ask)
    app.add_typer(index_app, name="index")
    app.add_typer(guidelines_app, name="guidelines")
    eval_app.command("retrieval")(eval_retrieval)
