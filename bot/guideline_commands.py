"""`carebot ingest`, `carebot index stats|drop`, `carebot ask`, `carebot eval retrieval`."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from bot.config import Settings
    from rag.ingest import FileOutcome, IngestReport
    from rag.library import GuidelineLibrary

index_app = typer.Typer(help="Look after the guideline index.", no_args_is_help=True)
_Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


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
    as_json: _Json = False,
) -> None:
    """Add guideline files (Markdown, text, HTML, PDF, MedQuAD XML) to the index.

    Unchanged files are skipped, changed ones replaced, files gone from an ingested folder
    removed. A file that cannot be read is reported and skipped.
    """
    from bot.cli import _settings

    library = _open(_settings())
    bar = _Bar()
    try:
        report = library.ingest(paths, bar)
    finally:
        bar.close()
    typer.echo(report.model_dump_json(indent=2) if as_json else _summary(report))
    raise typer.Exit(1 if report.count("failed") and not report.changed else 0)


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
        library.ingest(library.start_up_paths())

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
    eval_app.command("retrieval")(eval_retrieval)
