"""Shared fixtures: isolated settings, runtimes, real servers on loopback, no internet."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings, load_settings
from bot.llm.base import LLMBackend
from bot.log_safety import QUIET_LOGGERS
from bot.runtime import Runtime, build_runtime
from bot.storage.migrate import upgrade
from bot.storage.repository import Storage, make_engine
from bot.triage.criteria import CriteriaBook
from bot.triage.rules import TriageRules
from rag.embeddings import MiniLMEmbeddings
from rag.library import GuidelineLibrary
from tests.bot_api import BotAPIServer
from tests.fakes import scripted
from tests.log_scan import LogScan
from tests.servers import PostgresServer, RedisServer

_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise RuntimeError(f"test tried to reach the network: {host}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True, scope="session")
def no_internet() -> Iterator[None]:
    """Fail any test that tries to connect anywhere but loopback."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run each test with no CareBot variables and no .env from the developer's checkout."""
    for name in list(os.environ):
        if name.startswith("CAREBOT_TEST_"):
            continue  # switches for the test suite itself, not settings
        if name.startswith("CAREBOT_") or name in (
            "REDIS_URL",
            "DATABASE_URL",
            "TELEGRAM_BOT_TOKEN",
            "TELEGRAM_API_BASE_URL",
        ):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data")


RuntimeFactory = Callable[..., Awaitable[Runtime]]


@pytest.fixture(scope="session")
def triage_rules() -> TriageRules:
    """The shipped rules, lexicon, ConText cues and the bundled pages' criteria (loading
    takes a few seconds)."""
    return TriageRules(criteria=CriteriaBook.load())


@pytest.fixture(scope="session")
def minilm() -> MiniLMEmbeddings:
    """The packaged MiniLM model, at the precision this CPU would use."""
    return MiniLMEmbeddings()


@pytest.fixture(scope="session")
def guideline_index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled pack, embedded and indexed once for the session (runtimes share it)."""
    folder = tmp_path_factory.mktemp("guideline-index")
    library = GuidelineLibrary.open(load_settings(data_dir=folder), index_dir=folder)
    report = library.ingest(library.start_up_paths())
    assert report.count("failed") == 0, report.files
    return folder


@pytest.fixture
async def make_runtime(tmp_path: Path, guideline_index_dir: Path) -> AsyncIterator[RuntimeFactory]:
    """Build runtimes on a fresh data folder; each is closed after the test."""
    made: list[Runtime] = []

    async def build(llm: LLMBackend | None = None, **overrides: Any) -> Runtime:
        overrides.setdefault("data_dir", tmp_path / "data")
        overrides.setdefault("index_dir", guideline_index_dir)
        # Tests of storage, memory, consent and answers want the answer at once; the
        # follow-up questions have their own tests (tests/test_triage_flow.py).
        overrides.setdefault("triage_followup_rounds", 0)
        runtime = await build_runtime(load_settings(**overrides), llm=llm or scripted("ok"))
        made.append(runtime)
        return runtime

    yield build
    for runtime in made:
        await runtime.aclose()


@pytest.fixture
def api() -> Iterator[BotAPIServer]:
    """A Bot API test server on loopback, for one test."""
    server = BotAPIServer()
    yield server
    server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, to stop, pause or fill without touching others."""
    folder = tmp_path / "private-redis"
    folder.mkdir()
    server = RedisServer(folder)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL on a free loopback port, for the whole test session."""
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind CareBot supports: the SQLite file of the embedded
    default, and a fresh database on the test session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'carebot.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.fresh_database()


@pytest.fixture
def storage(database_url: str) -> Iterator[Storage]:
    """A migrated, empty database of each kind, for storage-level tests (SQLite and
    PostgreSQL: every test that takes it runs on both)."""
    engine = make_engine(database_url)
    upgrade(engine)
    yield Storage(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, for the whole test session."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


# --- the log scan over the whole run (tests/log_scan.py) ---------------------------------

LOG_SCAN = LogScan()


def pytest_configure(config: pytest.Config) -> None:
    # As a deployment logs: INFO, with the libraries that log URLs or payloads held higher.
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for name, least in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(least)
    root.addHandler(LOG_SCAN)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    logging.getLogger().removeHandler(LOG_SCAN)
    if LOG_SCAN.findings and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    scan = LOG_SCAN
    if scan.findings:
        terminalreporter.section("log scan: secrets or patient text in CareBot's logs", red=True)
        for f in scan.findings[:50]:
            terminalreporter.line(f"{f.what}: {f.level} {f.logger}: {f.excerpt}")
        terminalreporter.line(f"{len(scan.findings)} finding(s) in {scan.scanned} log records")
    else:
        terminalreporter.line(f"log scan: {scan.scanned} log records, no secret or patient text")
