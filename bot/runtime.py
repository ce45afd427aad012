"""Wire CareBot's long-lived parts together once at start-up, and close them on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from bot.cases.service import CaseOptions, CaseService
from bot.cases.store import CaseStore
from bot.cases.summary import CaseSummarizer
from bot.cluster_events import ClusterEvents, build_cluster_events
from bot.config import Settings
from bot.engine import ConversationEngine
from bot.errors import ConfigError, LLMUnavailable, MemoryUnavailable
from bot.guideline_approvals import left_out, start_up_gate
from bot.leader import Leadership, lead
from bot.llm.base import LLMBackend
from bot.llm.factory import build_llm
from bot.memory.base import SessionStore
from bot.memory.erasure import MemoryErasure
from bot.memory.inmemory import InMemorySessionStore
from bot.memory.redis_store import RedisSessionStore
from bot.prompt_store import PromptReloader, PromptStore
from bot.prompts import PromptLibrary
from bot.rate_limit import RateLimits
from bot.replies import EngineOptions
from bot.storage import encryption
from bot.storage.migrate import upgrade
from bot.storage.repository import Forgotten, Storage, make_engine, owner_only_folder
from bot.storage.retention import Retention
from bot.transport import unencrypted
from bot.triage.classifier import TriageClassifier
from bot.triage.criteria import CriteriaBook
from bot.triage.rules import TriageRules
from bot.triage.semantic import Embedder, SemanticMatcher
from bot.triage.service import ModelVote, TriageService
from rag.answer import GuidelineAnswerer
from rag.errors import IndexUnavailable
from rag.library import BUNDLED, GuidelineLibrary

logger = logging.getLogger(__name__)
RETENTION_EVERY_S = 3600.0  # the retention pass: at start, then hourly


@dataclass
class Runtime:
    """Everything a channel needs to serve patients."""

    settings: Settings
    storage: Storage
    sessions: SessionStore
    llm: LLMBackend
    engine: ConversationEngine
    cases: CaseService
    prompt_store: PromptStore
    on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Set while this process leads the cluster's timers (bot/leader.py); always, alone.
    leading: asyncio.Event = field(default_factory=asyncio.Event)
    # Telegram by webhook: (body, secret header) -> HTTP status (bot/channels/telegram/webhook.py).
    telegram_webhook: Callable[[bytes, str | None], Awaitable[int]] | None = None
    # Live events and cache purges shared with the other workers (bot/cluster_events.py).
    cluster: ClusterEvents = field(default_factory=ClusterEvents)
    # Rate limits and sign-in throttles, counted across workers when Redis is set.
    limits: RateLimits = field(default_factory=RateLimits)

    async def patient_erased(self, forgotten: Forgotten) -> None:
        """After the retention job erased a patient's rows, as /forget does: session memory
        (recorded and retried while it is down), caches, the bot's messages to doctors."""
        await MemoryErasure(self.storage, self.sessions).forget(forgotten.chat_keys)
        await self.cluster.clear_caches()
        await self.cases.forgotten(forgotten)

    async def aclose(self) -> None:
        """Stop channels, close connections and release the model."""
        stops, self.on_close = self.on_close, []  # closing twice is harmless
        for stop in reversed(stops):
            await stop()
        await self.sessions.aclose()
        await self.llm.aclose()
        self.storage.engine.dispose()


def build_sessions(settings: Settings) -> SessionStore:
    """Return Redis session memory when REDIS_URL is set, else the embedded store."""
    if settings.redis_url:
        return RedisSessionStore.from_url(
            settings.redis_url.get_secret_value(), settings.session_ttl_s, settings.history_turns
        )
    return InMemorySessionStore(settings.session_ttl_s, settings.history_turns)


def open_guidelines(settings: Settings) -> GuidelineLibrary:
    """Open the guideline index and bring the start-up guidelines up to date in it (the
    bundled pack, and the files of CAREBOT_GUIDELINE_PATHS that were approved)."""
    library = GuidelineLibrary.open(settings)
    if settings.ingest_on_start:
        gate = start_up_gate(settings)
        try:
            report = library.ingest(library.start_up_paths(), admit=gate.admit if gate else None)
        except IndexUnavailable as exc:
            # Serve anyway: emergencies need no index, and answers say no guideline was found.
            logger.error("guidelines could not be ingested (%s)", exc)
        else:
            for failed in (f for f in report.files if f.status == "failed"):
                logger.warning("guideline %s skipped: %s", failed.path, failed.reason)
            for path in left_out(gate):
                logger.warning(
                    "guideline %s is not approved and was left out (propose it with "
                    "carebot ingest PATH --by USERNAME; a clinician approves it)",
                    path.name,
                )
    try:
        library.embedder.warm_up()
    except IndexUnavailable as exc:
        logger.error("the embedding model could not be loaded (%s)", exc)
    return library


def build_triage(
    settings: Settings,
    llm: LLMBackend | None,
    prompts: PromptLibrary,
    vote: ModelVote | None = None,
    embedder: Embedder | None = None,
) -> TriageService:
    """Build the triage service: rules and lexicon, matching by meaning when an embedding
    model is given, and the LLM classifier when there is an LLM."""
    classifier = TriageClassifier(llm, prompts) if llm is not None else None
    semantic = None
    # The guideline pages' own "when to get help" statements are criteria, read by meaning:
    # without an embedding model they cannot be matched, and the rules stand alone.
    criteria = None
    if embedder is not None and settings.triage_semantic and settings.triage_criteria:
        gate = start_up_gate(settings)  # a page not approved sets no criterion
        criteria = CriteriaBook.load(
            [BUNDLED, *settings.guideline_paths], admit=gate.admit if gate else None
        )
    rules = TriageRules(criteria=criteria)
    if embedder is not None and settings.triage_semantic:
        semantic = SemanticMatcher(
            rules,
            embedder,
            settings.triage_semantic_threshold,
            cache_dir=settings.guideline_index_dir,
        )
        try:
            semantic.warm_up()
        except IndexUnavailable as exc:
            # The lexicon's patterns still read every message; meaning adds to them.
            logger.error("triage matches by words only: no embedding model (%s)", exc)
            semantic = None
    return TriageService(
        rules,
        classifier,
        vote or ModelVote(settings.triage_model_vote),
        semantic=semantic,
        questions_per_round=settings.triage_questions_per_round,
    )


async def build_runtime(settings: Settings, llm: LLMBackend | None = None) -> Runtime:
    """Migrate the database, connect memory, load prompts, rules, guidelines and the LLM."""
    plain = unencrypted(settings)
    if plain and settings.require_tls:
        raise ConfigError("CAREBOT_REQUIRE_TLS is on, but not encrypted: " + "; ".join(plain))
    for line in plain:
        logger.warning("unencrypted connection to another host: %s", line)
    owner_only_folder(settings.data_dir)
    encryption.configure(settings.message_keys)
    db = make_engine(settings.sqlalchemy_url, pool_size=settings.db_pool_size)
    upgrade(db)
    storage = Storage(db)
    sessions = build_sessions(settings)
    try:
        await sessions.ping()
    except MemoryUnavailable as exc:
        # Serve anyway: the engine rebuilds each session from the database until Redis is back.
        logger.warning("REDIS_URL is not reachable (%s); using the database as memory", exc)
    prompts = PromptLibrary(settings.prompts_dir)
    prompt_store = PromptStore(storage, prompts)
    reloader = PromptReloader(prompt_store, settings.prompt_reload_s)
    await prompt_store.seed()
    await reloader.check()  # serve the published versions from the first message
    llm = llm or build_llm(settings)
    # The model's self-test (its own process) runs while the guidelines are brought up to date.
    warming = asyncio.create_task(llm.warm_up(), name="llm-warm-up")
    library = await asyncio.to_thread(open_guidelines, settings)
    try:
        await warming
    except LLMUnavailable as exc:
        # Serve anyway: emergencies need no model, and answers fall back to quoted guidelines.
        logger.error("the LLM could not be prepared (%s); answers will quote guidelines", exc)
    answerer = GuidelineAnswerer(
        library.retriever, llm, prompts, k=settings.retrieval_k, mmr=settings.retrieval_mmr
    )
    engine = ConversationEngine(
        storage,
        sessions,
        build_triage(settings, llm, prompts, embedder=library.embedder),
        answerer,
        prompts,
        EngineOptions(
            emergency_number=settings.emergency_number,
            emergency_numbers=settings.emergency_numbers,
            max_followup_rounds=settings.triage_followup_rounds,
            default_language=settings.default_language,
            max_message_chars=settings.max_message_chars,
            history_turns=settings.history_turns,
            memory_s=settings.session_ttl_s,
            keep_clinical_record=settings.clinical_record_days > 0,
        ),
    )
    cases = CaseService(
        CaseStore(storage),
        sessions,
        CaseSummarizer(llm, prompts, engine.rules),
        engine.writer,
        CaseOptions(
            realert_s=settings.case_realert_s,
            alerts_before_expiry=settings.case_alerts_before_expiry,
            alert_unconfirmed_s=(
                settings.case_alert_unconfirmed_s if settings.tells_doctors_group else None
            ),
        ),
    )
    engine.cases = cases
    cluster = build_cluster_events(
        settings.redis_url.get_secret_value() if settings.redis_url else None
    )
    engine.cluster = cluster
    cases.events.share(cluster)
    runtime = Runtime(settings, storage, sessions, llm, engine, cases, prompt_store)
    runtime.cluster = cluster
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    runtime.limits = RateLimits(redis_url)
    listening = asyncio.create_task(cluster.run(), name="cluster-events")
    reloading = asyncio.create_task(reloader.run(), name="prompt-reload")
    retention = Retention(storage, settings.retention_days, settings.clinical_record_days)

    def timers() -> list[Coroutine[Any, Any, None]]:
        # Run by one process of a cluster at a time (bot/leader.py): a case re-alerted twice,
        # or a retention pass run twice at once, is what several processes did without it.
        return [
            cases.run_deadlines(),
            retention.run(RETENTION_EVERY_S, runtime.patient_erased),
            MemoryErasure(storage, sessions).run(),
        ]

    leadership = Leadership("timers", db, settings.data_dir)
    leading = asyncio.create_task(
        lead(leadership, timers, settings.leader_check_s, runtime.leading), name="timers"
    )

    async def stop_cases() -> None:
        for task in (leading, reloading, listening):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await cases.aclose()
        await cluster.aclose()
        await runtime.limits.aclose()

    runtime.on_close.append(stop_cases)
    return runtime
