"""`carebot serve --workers 2` as an operator runs it: two real worker processes behind one
port, one database. Every message is answered by whichever worker takes the connection;
/metrics adds up what every worker counted (prometheus-client's multiprocess mode), answers
only with the token, and a worker killed with -9 is replaced without losing its counts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

import bot.metrics  # noqa: F401  (registers CareBot's metrics)
from tests.faults.harness import CareBotProcess
from tests.faults.llm_server import FaultyLLMServer

METRICS_TOKEN = "metrics-token-for-this-test-0123456789"  # pragma: allowlist secret
MESSAGES = 12
DASHBOARD = "infra/grafana/carebot-dashboard.json"


@pytest.fixture
def served(tmp_path: Path, guideline_index_dir: Path) -> Iterator[CareBotProcess]:
    llm = FaultyLLMServer()
    carebot = CareBotProcess(
        tmp_path,
        {
            "CAREBOT_WEB_WORKERS": "2",
            "CAREBOT_INDEX_DIR": str(guideline_index_dir),
            "CAREBOT_LLM_BACKEND": "openai",
            "CAREBOT_LLM_BASE_URL": llm.base_url,
            "CAREBOT_TRIAGE_FOLLOWUP_ROUNDS": "0",
            "CAREBOT_METRICS_TOKEN": METRICS_TOKEN,
        },
    )
    carebot.start()
    try:
        yield carebot
    finally:
        carebot.stop()
        llm.stop()


def scrape(carebot: CareBotProcess) -> str:
    """One scrape on a new connection (so it may reach either worker)."""
    got = httpx.get(
        f"{carebot.url}/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
        timeout=10,
    )
    assert got.status_code == 200, got.status_code
    return got.text


def sample(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def worker_pids(text: str) -> set[int]:
    return {int(p) for p in re.findall(r'^carebot_worker_up\{pid="(\d+)"\} 1\.0$', text, re.M)}


def until(predicate: object, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_two_workers_answer_and_metrics_add_up_across_them(served: CareBotProcess) -> None:
    carebot = served
    until(lambda: len(worker_pids(scrape(carebot))) == 2, "both workers up")
    assert httpx.get(f"{carebot.url}/metrics", timeout=10).status_code == 401  # no token

    for i in range(MESSAGES):  # a new browser each time: a new connection, either worker
        with httpx.Client(base_url=carebot.url, timeout=60) as web:
            text = f"How do I treat a mild cold? ({i})"
            body = {"message_id": uuid.uuid4().hex, "text": text, "consent": True}
            with web.stream("POST", "/api/messages", json=body) as res:
                assert res.status_code == 200
                assert res.read()
    # Every scrape, whichever worker answers it, counts every message of both.
    for _ in range(6):
        text = scrape(carebot)
        assert sample(text, 'carebot_messages_total{channel="web"}') == MESSAGES
    assert 'carebot_llm_seconds_count{call="stream",outcome="ok"}' in text
    assert "cold" not in text  # no patient words in any label

    # kill -9 one worker: uvicorn starts another; what the dead one counted still counts.
    before = worker_pids(text)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    until(
        lambda: len(after := worker_pids(scrape(carebot))) == 2 and victim not in after,
        "a new worker in place of the killed one",
    )
    assert sample(scrape(carebot), 'carebot_messages_total{channel="web"}') == MESSAGES


def test_several_workers_need_telegram_by_webhook(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREBOT_")}
    env.update(
        CAREBOT_DATA_DIR=str(tmp_path / "data"),
        TELEGRAM_BOT_TOKEN="123456:a-token-for-a-refused-start",  # pragma: allowlist secret
    )
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve", "--workers", "2"],
        env=env,
        capture_output=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert b"TELEGRAM_WEBHOOK_URL" in done.stderr and b"123456" not in done.stderr


def test_the_grafana_dashboard_reads_only_metrics_carebot_exports() -> None:
    """infra/grafana/carebot-dashboard.json cannot drift from bot/metrics.py unnoticed."""
    exported = {
        sample_name
        for family in REGISTRY.collect()
        if family.name.startswith("carebot_")
        for sample_name in (
            family.name,
            f"{family.name}_total",
            f"{family.name}_bucket",
            f"{family.name}_count",
            f"{family.name}_sum",
        )
    }
    board = json.loads(
        (Path(__file__).parents[1] / "infra/grafana/carebot-dashboard.json").read_text()
    )
    used = {
        name
        for panel in board["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(carebot_[a-z_]+)\b", target["expr"])
    }
    assert len(used) >= 9 and used <= exported, used - exported
