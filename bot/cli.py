"""The `carebot` command line: chat, serve, check, triage, ingest, index, ask, eval, users,
cases, prompts."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bot.cases.commands import register as register_case_commands
from bot.config import Settings, load_settings
from bot.dashboard.commands import register as register_user_commands
from bot.errors import ConfigError
from bot.guideline_commands import register as register_guideline_commands
from bot.prompt_commands import register as register_prompt_commands
from bot.startup import prepare_process
from bot.storage.audit_commands import register as register_audit_commands
from bot.storage.key_commands import register as register_key_commands
from bot.storage.record_commands import register as register_record_commands

if TYPE_CHECKING:
    from bot.llm.base import LLMBackend
    from bot.triage.evaluate import EvalCase, EvalReport
    from bot.triage.service import TriageResult, TriageService

app = typer.Typer(
    help="CareBot: a self-hostable telemedicine chat assistant. "
    "Configuration comes from CAREBOT_* environment variables and .env (see README).",
    no_args_is_help=True,
    add_completion=False,
)


def _settings(**overrides: Any) -> Settings:
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        typer.echo(f"carebot: {exc}", err=True)
        raise typer.Exit(2) from exc
    prepare_process(settings)
    return settings


@app.command()
def chat(
    consent: Annotated[
        bool, typer.Option("--consent", help="Accept the consent terms up front (scripted use).")
    ] = False,
    chat_id: Annotated[
        str | None, typer.Option("--chat", help="Continue this chat id instead of a new one.")
    ] = None,
) -> None:
    """Chat in the terminal; piped input is read one message per line."""
    from bot.channels.terminal import run_terminal_chat
    from bot.runtime import build_runtime

    settings = _settings()
    if not sys.stdin.isatty():
        # Piped output is for scripts: keep it to the replies.
        logging.getLogger().setLevel(max(logging.WARNING, logging.getLogger().level))

    async def main() -> None:
        runtime = await build_runtime(settings)
        try:
            await run_terminal_chat(
                runtime.engine,
                sys.stdin.buffer,
                sys.stdout,
                consent=consent,
                interactive=sys.stdin.isatty(),
                chat_id=chat_id,
            )
        finally:
            await runtime.aclose()

    asyncio.run(main())


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (CAREBOT_WEB_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (CAREBOT_WEB_PORT).")] = None,
    trusted_proxies: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated addresses/networks of your reverse proxies "
            "(CAREBOT_TRUSTED_PROXIES). Only these may set X-Forwarded-For/-Proto; by default "
            "nobody may, and each client counts as the address it connects from."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Worker processes (CAREBOT_WEB_WORKERS, default 1). More than one needs "
            "Telegram by webhook (TELEGRAM_WEBHOOK_URL) when a bot token is set; PostgreSQL "
            "and Redis are what several workers are built for (docs/deploy.md).",
        ),
    ] = None,
) -> None:
    """Serve the web chat (and the Telegram bot when TELEGRAM_BOT_TOKEN is set)."""
    import uvicorn

    from bot.serve import create_app, prepare_workers, proxy_options

    overrides: dict[str, Any] = {}
    if trusted_proxies is not None:
        overrides["trusted_proxies"] = trusted_proxies
    if workers is not None:
        overrides["web_workers"] = workers
    settings = _settings(**overrides)
    base = f"http://{host or settings.web_host}:{port or settings.web_port}"
    typer.echo(f"CareBot web chat: {base}   doctors' dashboard: {base}/dashboard")
    # One worker: the app built here. Several: uvicorn starts each from `worker_app`, which
    # reads the settings from the environment, so what the options changed goes there.
    app_: Any = "bot.serve:worker_app"
    if settings.web_workers > 1:
        prepare_workers(settings, overrides)
    else:
        app_ = create_app(settings)
    uvicorn.run(
        app_,
        factory=settings.web_workers > 1,
        workers=settings.web_workers,
        host=host or settings.web_host,
        port=port or settings.web_port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=5,  # dashboards' live streams never end by themselves
        log_config=None,  # uvicorn's loggers go through the root handlers and their redaction
        **proxy_options(settings),  # type: ignore[arg-type]
    )


@app.command()
def check() -> None:
    """Check the configuration, database, session memory and LLM, then exit."""
    from bot.checks import run_checks

    settings = _settings()
    ok = asyncio.run(run_checks(settings, typer.echo))
    raise typer.Exit(0 if ok else 1)


eval_app = typer.Typer(help="Measure CareBot on evaluation data (results as a table or JSON).")
app.add_typer(eval_app, name="eval")


class TriageMode(StrEnum):
    """What `carebot eval triage` runs."""

    rules = "rules"
    full = "full"


class Unmentioned(StrEnum):
    """How the simulated patient answers a red-flag question its case does not answer."""

    absent = "absent"
    unsure = "unsure"


@app.command()
def triage(
    text: Annotated[str, typer.Argument(help="What the patient wrote (quote it).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    model: Annotated[
        bool, typer.Option("--model/--no-model", help="Also run the LLM classifier.")
    ] = True,
) -> None:
    """Triage one message: level, firing rules, facts, model output and reasons."""
    from bot.triage.report import describe_triage

    settings = _settings()
    result = asyncio.run(_triage_once(settings, text, model))
    typer.echo(result.model_dump_json(indent=2) if as_json else describe_triage(result))


async def _triage_once(settings: Settings, text: str, model: bool) -> TriageResult:
    from bot.replies import detect_language

    service, llm = await _triage_service(settings, model)
    try:
        return await service.assess([text], detect_language(text, settings.default_language))
    finally:
        if llm is not None:
            await llm.aclose()


async def _triage_service(
    settings: Settings, model: bool
) -> tuple[TriageService, LLMBackend | None]:
    """Build triage with the configured LLM; its level counts only if the vote says "raise"."""
    from bot.llm.factory import build_llm
    from bot.prompts import PromptLibrary
    from bot.runtime import build_triage
    from bot.triage.service import ModelVote
    from rag.embeddings import MiniLMEmbeddings

    llm = build_llm(settings) if model else None
    vote = ModelVote.RAISE if settings.triage_model_vote == "raise" else ModelVote.ADVISE
    embedder = MiniLMEmbeddings(
        settings.embedding_model_path,
        batch_size=settings.embedding_batch_size,
        precision=settings.embedding_precision,
    )
    prompts = PromptLibrary(settings.prompts_dir)
    return build_triage(settings, llm, prompts, vote, embedder), llm


@eval_app.command("triage")
def eval_triage(
    file: Annotated[
        Path | None, typer.Argument(help="JSON Lines cases, or the Semigran file as is.")
    ] = None,
    dialogue: Annotated[
        Path | None,
        typer.Option(
            "--dialogue",
            help="Dialogue cases: opening message + facts by question id; a simulated "
            "patient answers the bot's questions.",
        ),
    ] = None,
    mode: Annotated[
        TriageMode, typer.Option(help="rules: rules only; full: rules + LLM classifier.")
    ] = TriageMode.rules,
    unmentioned: Annotated[
        Unmentioned | None,
        typer.Option(
            help="How the simulated patient answers a red-flag question the case does not "
            "answer: absent ('no': a complete vignette would have mentioned it; the default "
            "for single-message files) or unsure ('I'm not sure'; the default with "
            "--dialogue)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (every case included).")] = (
        False
    ),
) -> None:
    """Score triage on labelled cases: accuracy, emergency recall, under/over-triage.

    Every case is played as a conversation: the bot may ask its rounds of red-flag questions
    and the simulated patient answers from the case's facts ("I'm not sure" when it has none,
    as for single-message files); the level scored is the one the bot settles on.
    """
    from bot.triage.evaluate import load_cases

    settings = _settings()
    path = dialogue or file
    if path is None or (dialogue is not None and file is not None):
        typer.echo("carebot: give one case file, or --dialogue FILE", err=True)
        raise typer.Exit(2)
    try:
        cases = load_cases(path)
    except (OSError, ValueError) as exc:
        typer.echo(f"carebot: {exc}", err=True)
        raise typer.Exit(2) from exc
    if unmentioned is None:
        unmentioned = Unmentioned.unsure if dialogue else Unmentioned.absent
    report = asyncio.run(_evaluate(settings, cases, mode, unmentioned))
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        from bot.triage.evaluate import format_table

        typer.echo(format_table(report))


@eval_app.command("behaviour")
def eval_behaviour(
    failures: Annotated[int, typer.Option(help="Failures to list.")] = 20,
) -> None:
    """Run the generated behavioural tests (MFT, INV, DIR for every lexicon finding)."""
    from bot.triage import behaviour

    service, _ = asyncio.run(_triage_service(_settings(), False))
    report = behaviour.run(service)
    typer.echo(f"Behavioural tests: {report.total} cases, {len(report.failures)} failures")
    for name, count in sorted(report.counts.items()):
        failed = sum(1 for case, _ in report.failures if f"{case.kind} {case.template}" == name)
        typer.echo(f"  {name:<18} {count:>5}  failed {failed}")
    for case, level in report.failures[:failures]:
        typer.echo(
            f"  FAIL {case.kind} {case.template} {case.finding}: "
            f"{level.value}, wanted {case.wanted}"
        )
    if report.failures:
        raise typer.Exit(1)


@eval_app.command("criteria")
def eval_criteria(
    as_json: Annotated[bool, typer.Option("--json", help="Print every criterion.")] = False,
) -> None:
    """The guideline pages' triage criteria: per-level counts, thresholds and recall."""
    import json
    import statistics

    service, _ = asyncio.run(_triage_service(_settings(), False))
    if service.semantic is None:
        typer.echo("carebot: criteria need the embedding model", err=True)
        raise typer.Exit(2)
    service.semantic.warm_up()
    rows = {
        rule_id: (service.rules.criteria[rule_id], calibration)
        for rule_id, calibration in service.semantic.calibration.items()
    }
    if as_json:
        typer.echo(
            json.dumps(
                {
                    rule_id: {"level": c.spec.level.value, **vars(cal)}
                    for rule_id, (c, cal) in rows.items()
                },
                indent=2,
            )
        )
        return
    pages = {c.page for c, _ in rows.values()}
    typer.echo(f"Guideline criteria: {len(rows)} from {len(pages)} pages")
    for level in ("emergency", "urgent", "routine"):
        mine = [cal for c, cal in rows.values() if c.spec.level.value == level]
        if mine:
            typer.echo(
                f"  {level:<9} {len(mine):>4}  threshold median "
                f"{statistics.median(x.threshold for x in mine):.3f}  "
                f"leave-one-out recall {statistics.mean(x.recall for x in mine):.2f}"
            )
    blurred = sorted(r for r, (_, cal) in rows.items() if cal.threshold >= 0.9)
    typer.echo(f"  {len(blurred)} criteria sit at 0.9 or above (a near miss almost the same):")
    for rule_id in blurred:
        typer.echo(f"    {rule_id}")


async def _evaluate(
    settings: Settings, cases: list[EvalCase], mode: TriageMode, unmentioned: Unmentioned
) -> EvalReport:
    from bot.replies import detect_language
    from bot.triage.evaluate import Prediction, converse, evaluate

    service, llm = await _triage_service(settings, mode is TriageMode.full)

    async def assess(case: EvalCase) -> Prediction:
        language = case.language or detect_language(case.text, settings.default_language)
        rounds = settings.triage_followup_rounds
        return await converse(service, case, language, rounds, unmentioned.value)

    try:
        if llm is not None:
            await llm.warm_up()
        return await evaluate(cases, assess, mode=mode.value)
    finally:
        if llm is not None:
            await llm.aclose()


register_guideline_commands(app, eval_app)
register_case_commands(app)
register_prompt_commands(app)
register_user_commands(app)
register_key_commands(app)
register_audit_commands(app)
register_record_commands(app)


def main() -> None:
    """Entry point of the `carebot` console script."""
    # Everything CareBot writes (the database and its WAL, indexes, caches, logs it opens) is
    # for its own user alone: patients' words are not for other accounts on the host.
    os.umask(0o077)
    app()


if __name__ == "__main__":
    main()
