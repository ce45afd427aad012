"""`carebot` as a person runs it: the terminal chat, piped, on embedded defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bot_api import BotAPIServer
from tests.servers import free_port

CAREBOT = [sys.executable, "-m", "bot.cli"]
_SHARED: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _shared_index(guideline_index_dir: Path) -> None:
    # Each command would otherwise embed the bundled pack again (seconds per test).
    _SHARED["CAREBOT_INDEX_DIR"] = str(guideline_index_dir)


def run(
    args: list[str], stdin: bytes, tmp_path: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAREBOT_")}
    clean.update({"CAREBOT_DATA_DIR": str(tmp_path / "data"), **_SHARED, **env})
    proc = subprocess.run(
        CAREBOT + args,
        input=stdin,
        capture_output=True,
        env=clean,
        cwd=tmp_path,
        timeout=300,
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


@pytest.mark.embedded_llm
def test_fever_question_is_answered_with_a_cited_guideline(tmp_path: Path) -> None:
    # The README's example: the question, then "no" to the round of red-flag questions.
    out = run(
        ["chat", "--consent"],
        b"I'm 34 and have had a mild fever since yesterday, what can I do?\nno\n",
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "1. Are you struggling to breathe" in out.stdout  # the questions come first
    assert "Sources:\n[1] Fever in adults" in out.stdout
    assert "managed at home" in out.stdout and "not a diagnosis" in out.stdout


def test_emergency_is_answered_even_with_the_llm_server_down(tmp_path: Path) -> None:
    out = run(
        ["chat"],
        b"crushing chest pain and sweating for 20 minutes\n",
        tmp_path,
        CAREBOT_LLM_BACKEND="openai",
        CAREBOT_LLM_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",
    )
    assert out.returncode == 0, out.stderr
    assert "This could be an emergency. Call 112 now" in out.stdout


def test_without_consent_the_first_reply_asks_for_it(tmp_path: Path) -> None:
    out = run(
        ["chat"],
        b"I have a sore throat\n",
        tmp_path,
        CAREBOT_LLM_BACKEND="openai",
        CAREBOT_LLM_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",
    )
    assert 'Reply "yes" to agree' in out.stdout


def test_each_piped_line_gets_one_reply_even_binary_and_empty(tmp_path: Path) -> None:
    lines = b"\n".join([b"", b"\xff\xfe\x00binary\x80", "我发烧了".encode(), b"hello"]) + b"\n"
    out = run(
        ["chat", "--consent"],
        lines,
        tmp_path,
        CAREBOT_LLM_BACKEND="openai",
        CAREBOT_LLM_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",
        CAREBOT_LLM_MAX_RETRIES="0",
        CAREBOT_TRIAGE_FOLLOWUP_ROUNDS="0",
    )
    assert out.returncode == 0, out.stderr
    replies = [r for r in out.stdout.split("\n\n") if r.strip()]
    assert "didn't receive any text" in replies[0]
    assert (
        out.stdout.count("CareBot gives general information")
        + out.stdout.count("CareBot 提供的是一般健康信息")
        == 3
    )
    assert "成人发烧" in out.stdout
    assert "Traceback" not in out.stderr


def test_invalid_setting_fails_fast_naming_the_variable(tmp_path: Path) -> None:
    out = run(["chat"], b"hi\n", tmp_path, CAREBOT_LLM_BACKEND="gpt-9")
    assert out.returncode == 2
    assert "CAREBOT_LLM_BACKEND" in out.stderr and "Traceback" not in out.stderr


def test_help_lists_the_commands(tmp_path: Path) -> None:
    out = run(["--help"], b"", tmp_path)
    assert out.returncode == 0
    for command in ("chat", "serve", "check"):
        assert command in out.stdout


@pytest.mark.embedded_llm
def test_check_reports_each_component(tmp_path: Path) -> None:
    out = run(["check"], b"", tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    for line in ("ok   database", "ok   session memory", "ok   llm (embedded)", "ok   guideline"):
        assert line in out.stdout
    # The model process's self-test: what it runs at, on this CPU's kernels.
    assert "ok   llm (embedded): ready (" in out.stdout and "tokens/s" in out.stdout


def test_check_says_why_the_embedded_model_cannot_be_used(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file" * 100)
    out = run(["check"], b"", tmp_path, CAREBOT_LLM_MODEL_PATH=str(bad))
    assert out.returncode == 1
    assert "ok   database" in out.stdout and "ok   guideline" in out.stdout
    assert "FAIL llm (embedded): embedded: unavailable:" in out.stdout


def test_check_names_what_fails(tmp_path: Path) -> None:
    api = BotAPIServer()  # a Bot API that has never heard of the doctors' group
    try:
        out = run(
            ["check"],
            b"",
            tmp_path,
            CAREBOT_LLM_BACKEND="openai",
            CAREBOT_LLM_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",
            CAREBOT_LLM_MAX_RETRIES="0",
            REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
            CHROMA_URL=f"http://127.0.0.1:{free_port()}",
            TELEGRAM_BOT_TOKEN="123:TEST",
            TELEGRAM_API_BASE_URL=api.base_url,
            CAREBOT_DOCTORS_CHAT_ID="-100777",
        )
    finally:
        api.stop()
    assert out.returncode == 1
    assert "ok   database" in out.stdout
    assert "FAIL guideline index" in out.stdout  # started all the same, and says what is down
    assert "FAIL session memory" in out.stdout and "FAIL llm (openai)" in out.stdout
    assert "FAIL doctors' group: the bot cannot reach it" in out.stdout
    assert "123:TEST" not in out.stdout + out.stderr


def test_triage_command_prints_level_rules_and_json(tmp_path: Path) -> None:
    out = run(["triage", "--no-model", "crushing chest pain and sweating"], b"", tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Level: emergency (decided by rules)" in out.stdout
    assert "EM-CARDIAC-CHEST-PAIN" in out.stdout
    text = "runny nose for 2 days, no trouble breathing, no chest pain, not confused"
    out = run(["triage", "--no-model", "--json", text], b"", tmp_path)
    data = json.loads(out.stdout)
    assert data["level"] == "self_care" and data["hits"][0]["rule_id"] == "SC-COLD-AND-COUGH"
    (evidence,) = data["hits"][0]["evidence"]
    assert evidence["text"] == "runny nose" and evidence["source"] == "lexicon"
    # Without the denials the same cold is not yet self-care: danger is not screened out.
    out = run(["triage", "--no-model", "runny nose for 2 days"], b"", tmp_path)
    assert "Level: routine (decided by screening)" in out.stdout
    assert "Would ask now: rf_breathing, rf_chest_pain" in out.stdout


def test_eval_triage_reads_cases_and_reports_every_one(tmp_path: Path) -> None:
    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        '{"id": "a", "text": "I cannot breathe", "expected": "emergency"}\n'
        '{"text": "runny nose for 2 days", "expected": ["self_care", "routine"]}\n'
        '{"text": "cough for 6 weeks", "expected": "urgent"}\n'
    )
    out = run(["eval", "triage", str(cases), "--json"], b"", tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["cases"] == 3 and report["emergency_found"] == 1
    assert [r["case_id"] for r in report["results"]] == ["a", "line 2", "line 3"]
    assert report["results"][2]["predicted"] == "routine" and report["under_triage_rate"] > 0
    table = run(["eval", "triage", str(cases)], b"", tmp_path).stdout
    assert "Exact accuracy         2/3" in table and "Confusion" in table


def test_eval_triage_plays_dialogues_with_a_simulated_patient(tmp_path: Path) -> None:
    cases = tmp_path / "dialogues.jsonl"
    cases.write_text(
        '{"id": "d1", "language": "en", "expected": "emergency", "opening": "my head hurts", '
        '"facts": {"rf_neuro": "yes her face has dropped"}}\n'
        '{"id": "d2", "language": "en", "expected": "self_care", "opening": '
        '"runny nose since yesterday", "facts": {"rf_breathing": "no", "rf_chest_pain": "no", '
        '"rf_consciousness": "no"}}\n'
        '{"id": "d3", "language": "zh", "expected": "routine", "opening": "流鼻涕两天了", '
        '"facts": {}}\n',
        encoding="utf-8",
    )
    out = run(["eval", "triage", "--dialogue", str(cases), "--json"], b"", tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    by_id = {r["case_id"]: r for r in report["results"]}
    assert by_id["d1"]["predicted"] == "emergency" and "rf_neuro" in by_id["d1"]["asked"]
    assert by_id["d2"]["predicted"] == "self_care" and by_id["d2"]["turns"] == 2
    # "不确定" to every question: danger never screened out, so not self-care.
    assert by_id["d3"]["predicted"] == "routine" and len(by_id["d3"]["asked"]) <= 6
    assert report["emergency_found"] == 1 and report["questions_median"] > 0
    table = run(["eval", "triage", "--dialogue", str(cases)], b"", tmp_path).stdout
    assert "Questions asked" in table and "Exact accuracy         3/3" in table


def test_eval_triage_refuses_a_malformed_file_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "expected": "purple"}\n')
    out = run(["eval", "triage", str(bad)], b"", tmp_path)
    assert out.returncode == 2 and "line 1" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.embedded_llm
def test_ingest_stats_ask_and_drop(tmp_path: Path) -> None:
    guides = tmp_path / "guides"
    guides.mkdir()
    (guides / "hiccups.md").write_text(
        "# Hiccups\n\nHiccups usually stop by themselves within a few minutes.\n\n"
        "## What you can do\n- Sip cold water slowly.\n- Hold your breath for a short time.\n"
    )
    (guides / "empty.txt").write_text("")
    own = {"CAREBOT_INDEX_DIR": str(tmp_path / "index"), "CAREBOT_INGEST_ON_START": "false"}
    password = b"correct horse battery staple 42\n"  # pragma: allowlist secret
    for user, role in (("sam", "operator"), ("lee", "doctor")):
        made = run(
            ["users", "add", user, "--role", role, "--name", user, "--password-stdin"],
            password,
            tmp_path,
            **own,
        )
        assert made.returncode == 0, made.stderr
    # Four eyes: not approved, left out; proposed by an operator, approved by a clinician.
    out = run(["ingest", str(guides)], b"", tmp_path, **own)
    assert "unapproved 1" in out.stdout and "added 0" in out.stdout, out.stderr
    assert "not approved and were left out" in out.stdout
    signed = ["--by", "sam", "--password-stdin"]
    out = run(["ingest", str(guides), *signed], password, tmp_path, **own)
    assert "wait for a clinician's approval (proposals 1)" in out.stdout, out.stderr
    shown = run(["guidelines", "show", "1"], b"", tmp_path, **own)
    assert "title: Hiccups" in shown.stdout and "Sip cold water slowly." in shown.stdout
    own_approval = run(["guidelines", "approve", "1", *signed], password, tmp_path, **own)
    assert own_approval.returncode == 1 and "only clinicians" in own_approval.stderr
    approved = run(
        ["guidelines", "approve", "1", "--by", "lee", "--password-stdin"], password, tmp_path, **own
    )
    assert approved.returncode == 0 and "approved" in approved.stdout, approved.stderr
    out = run(["ingest", str(guides)], b"", tmp_path, **own)
    assert out.returncode == 0, out.stderr
    assert "added 1" in out.stdout and "failed 1" in out.stdout
    assert "empty.txt: empty file" in out.stdout

    stats = json.loads(run(["index", "stats", "--json"], b"", tmp_path, **own).stdout)
    assert stats["documents"] == 1 and stats["chunks"] >= 1

    out = run(["ask", "how do I stop hiccups?", "--json"], b"", tmp_path, **own)
    answer = json.loads(out.stdout)
    assert answer["found"] and answer["citations"][0]["title"] == "Hiccups"
    assert answer["hits"][0]["similarity"] > 0.35

    out = run(["ask", "what is the capital of France?"], b"", tmp_path, **own)
    assert "No relevant guideline found." in out.stdout

    assert run(["index", "drop", "--yes"], b"", tmp_path, **own).returncode == 0
    stats = json.loads(run(["index", "stats", "--json"], b"", tmp_path, **own).stdout)
    assert stats["documents"] == 0
