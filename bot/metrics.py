"""Prometheus metrics (prometheus-client), served at /metrics.

One process: prometheus-client's default registry. Several workers (`carebot serve
--workers N`): its multiprocess mode: every worker writes its values to files in
`PROMETHEUS_MULTIPROC_DIR` (made and emptied by `carebot serve` before the workers start,
bot/cli.py) and /metrics adds them up, so whichever worker a scrape reaches answers for all.

No label carries patient data: channels, levels, queue and component names only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

MESSAGES = Counter(
    "carebot_messages", "Patient messages taken in (stored and answered), by channel", ["channel"]
)
TRIAGE = Counter("carebot_replies", "Replies to patients, by triage level", ["level"])
EMERGENCY_REPLY = Histogram(
    "carebot_emergency_reply_seconds",
    "From a message's arrival at the engine to its emergency reply being ready",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
)
DOCTORS_ALERT = Histogram(
    "carebot_doctors_alert_seconds",
    "From a case's opening to its first alert landing in the doctors' Telegram group",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
LLM_SECONDS = Histogram(
    "carebot_llm_seconds",
    "LLM calls, by kind (complete, stream) and outcome (ok, failed)",
    ["call", "outcome"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0),
)
LLM_TOKENS = Counter(
    "carebot_llm_output_tokens",
    "Tokens the LLM wrote (streamed pieces: one per token for vLLM and the embedded model)",
)
QUEUE_DEPTH = Gauge(
    "carebot_queue_depth",
    "Work waiting or running, by queue (telegram: updates in the chats' queues)",
    ["queue"],
    multiprocess_mode="livesum",
)
CASES_PAST_DEADLINE = Gauge(
    "carebot_open_cases_past_deadline",
    "Open cases still unclaimed after their first deadline (re-alerted at least once; set "
    "by the worker running the timers)",
    multiprocess_mode="livemostrecent",
)
DEPENDENCY_ERRORS = Counter(
    "carebot_dependency_errors",
    "Failures of the database, Redis (session memory) and the LLM, by component",
    ["component"],
)
WORKER_UP = Gauge(
    "carebot_worker_up", "1 for each live worker process", multiprocess_mode="liveall"
)
_PID = re.compile(r"_(\d+)\.db$")


def worker_started() -> None:
    """Count this process as a live worker (and forget workers that died without a word)."""
    _forget_dead_workers()
    WORKER_UP.set(1)


def exposition() -> tuple[bytes, str]:
    """The metrics of this process, or of every worker in multiprocess mode."""
    if not os.environ.get(MULTIPROC_ENV):
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    _forget_dead_workers()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _forget_dead_workers() -> None:
    """A worker killed (-9, OOM) leaves its gauge files: its live gauges must stop counting.
    Its counters stay (what it counted did happen)."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        return
    pids = {int(m.group(1)) for p in Path(folder).glob("*.db") if (m := _PID.search(p.name))}
    for pid in pids:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
