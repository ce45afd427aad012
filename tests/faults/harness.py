"""A real `carebot serve` process, its patients (web over HTTP, Telegram through the Bot API
test server), a doctor holding a case, and the checks every fault must pass:

- every message a patient sent is stored;
- every emergency gets its instruction within 2 s of being sent;
- no reply is sent twice (the same text answering the same Telegram message, or a second
  stored reply to one message);
- the hand-off holds: the doctor still hears the patient, the patient still hears the doctor.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.bot_api import BOT, BotAPIServer, private_message
from tests.faults.llm_server import FaultyLLMServer
from tests.servers import free_port

EMERGENCY_S = 2.0
TOKEN = "123456:FAULTS-campaign-token"
INSTRUCTION = "Call 112 now"
CHEST = "crushing chest pain and sweating for 20 minutes"
STROKE = "my face is drooping on one side and my speech is slurred"
QUESTION = "How should I look after a mild fever at home?"
DOCTORS = -1001234567890
DOCTOR = 501  # the doctor's Telegram id
HANDED_OFF = 600  # the Telegram patient whose case the doctor holds


class CareBotProcess:
    """`python -m bot.cli serve` with its own data folder; started, killed, restarted."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.port = folder, free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith("CAREBOT_")}
        for name in ("REDIS_URL", "DATABASE_URL", "CHROMA_URL", "TELEGRAM_BOT_TOKEN"):
            base.pop(name, None)
        self.env = {
            **base,
            "CAREBOT_DATA_DIR": str(folder / "data"),
            "CAREBOT_WEB_PORT": str(self.port),
            "CAREBOT_LOG_LEVEL": "INFO",
            **env,
        }
        self.log = folder / "carebot.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> Path:
        return self.folder / "data" / "carebot.db"

    def start(self, timeout_s: float = 180) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "serve"],
                env=self.env,
                cwd=self.folder,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"carebot serve exited:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"carebot serve did not come up:\n{self.tail()}")

    def command(self, *args: str, stdin: str = "") -> str:
        """Run `carebot ARGS` on this process's data folder; its output."""
        done = subprocess.run(
            [sys.executable, "-m", "bot.cli", *args],
            env=self.env,
            cwd=self.folder,
            input=stdin.encode(),
            capture_output=True,
            timeout=120,
            check=True,
        )
        return done.stdout.decode()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def health(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/healthz", timeout=5).json())


@dataclass
class Sent:
    """A patient message as the campaign sent it."""

    channel: str
    chat: str
    text: str
    emergency: bool
    at: float = field(default_factory=time.monotonic)
    answered_at: float | None = None  # when its first reply (or warning) arrived
    before: int = 0  # Telegram: how many bot messages the chat had when it was sent


class WebPatient:
    """One browser's chat: its own cookie; each message streamed in a thread of its own."""

    def __init__(self, campaign: Campaign, name: str) -> None:
        self.campaign, self.name = campaign, name
        self.http = httpx.Client(base_url=campaign.carebot.url, timeout=120)
        self.replies: list[dict[str, Any]] = []
        self.errors: list[str] = []

    def say(self, text: str, emergency: bool = False, consent: bool = True) -> threading.Thread:
        sent = self.campaign.record(Sent("web", self.name, text, emergency))
        body = {"message_id": uuid.uuid4().hex, "text": text, "consent": consent}

        def post() -> None:
            try:
                with self.http.stream("POST", "/api/messages", json=body) as res:
                    for line in res.iter_lines():
                        if not line:
                            continue
                        event = json.loads(line)
                        if event["type"] in ("warning", "reply") and sent.answered_at is None:
                            sent.answered_at = time.monotonic()
                        if event["type"] == "reply":
                            self.replies.append(event)
            except httpx.HTTPError as exc:  # the process was killed mid-reply
                self.errors.append(type(exc).__name__)

        thread = threading.Thread(target=post, daemon=True)
        thread.start()
        return thread


class Campaign:
    """The world a fault is injected into."""

    def __init__(
        self, folder: Path, api: BotAPIServer, llm: FaultyLLMServer, env: dict[str, str]
    ) -> None:
        self.api, self.llm = api, llm
        self.carebot = CareBotProcess(
            folder,
            {
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "TELEGRAM_API_BASE_URL": api.base_url,
                "CAREBOT_DOCTORS_CHAT_ID": str(DOCTORS),
                "CAREBOT_TELEGRAM_RETRY_FIRST_S": "1",
                "CAREBOT_LLM_BACKEND": "openai",
                "CAREBOT_LLM_BASE_URL": llm.base_url,
                "CAREBOT_LLM_TIMEOUT_S": "3",
                "CAREBOT_LLM_MAX_RETRIES": "0",
                "CAREBOT_TRIAGE_FOLLOWUP_ROUNDS": "0",
                **env,
            },
        )
        self.sent: list[Sent] = []
        self._ids: dict[int, int] = {}
        self._doctor_added = False
        self._watch = threading.Thread(target=self._watch_telegram, daemon=True)
        self._stopping = threading.Event()
        self._watch.start()

    def record(self, sent: Sent) -> Sent:
        self.sent.append(sent)
        return sent

    # --- Telegram -------------------------------------------------------------------------

    def telegram(self, chat: int, text: str, emergency: bool = False, **extra: Any) -> Sent:
        """A private message from `chat` (its own Telegram user)."""
        self._ids[chat] = self._ids.get(chat, 0) + 1
        sent = Sent("telegram", str(chat), text, emergency, before=len(self.api.texts(chat)))
        self.record(sent)
        self.api.send_update(private_message(self._ids[chat], chat, text=text, **extra))
        return sent

    def _watch_telegram(self) -> None:
        """Time each Telegram message's first reply (the watcher sees every bot message)."""
        while not self._stopping.wait(0.02):
            for sent in self.sent:
                if sent.channel != "telegram" or sent.answered_at is not None:
                    continue
                chat = int(sent.chat)
                if any(INSTRUCTION in t for t in self.api.texts(chat)[sent.before :]):
                    sent.answered_at = time.monotonic()

    def wait(self, predicate: Any, what: str, timeout_s: float = 30) -> None:
        assert self.api.wait_for(predicate, timeout_s), (
            f"timed out waiting for {what}\n{self.carebot.tail()}"
        )

    def until(self, predicate: Any, what: str, timeout_s: float = 30) -> None:
        """Poll `predicate` (for state the campaign's own watcher updates)."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)

    # --- the doctor's case ----------------------------------------------------------------

    def hand_off(self) -> int:
        """A Telegram patient's emergency, claimed by the doctor; returns the alert's id."""
        self.telegram(HANDED_OFF, "yes")
        self.wait(lambda: self.api.texts(HANDED_OFF), "consent thanks")
        self.telegram(HANDED_OFF, "I suddenly cannot breathe and my lips are blue", True)
        self.wait(lambda: any("case #" in t for t in self.api.texts(DOCTORS)), "the alert")
        key = max(k for k in self.api.messages if k[0] == DOCTORS)
        record = self.api.messages[key]
        claim = record["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        message = {
            "message_id": key[1],
            "date": record["date"],
            "chat": {"id": DOCTORS, "type": "supergroup", "title": "Doctors"},
            "from": BOT,
            "text": record["text"],
        }
        if not self._doctor_added:  # only a linked staff account may claim in Telegram
            self.carebot.command(
                "users",
                "add",
                "ada",
                "--role",
                "doctor",
                "--name",
                "Dr Ada",
                "--telegram-id",
                str(DOCTOR),
                "--password-stdin",
                stdin="correct horse battery staple\n",
            )
            self._doctor_added = True
        self.api.send_callback(DOCTOR, claim, message=message)
        self.wait(lambda: any("has joined" in t for t in self.api.texts(HANDED_OFF)), "joined")
        return key[1]

    def check_hand_off(self, tag: str) -> None:
        """Both ways: the patient's words reach the doctor, the doctor's reach the patient."""
        words = f"the pain is the same ({tag})"
        self.telegram(HANDED_OFF, words)
        self.wait(lambda: any(words in t for t in self.api.texts(DOCTOR)), f"relay to doctor {tag}")
        answer = f"Stay seated, help is coming ({tag})"
        self._ids[DOCTOR] = self._ids.get(DOCTOR, 0) + 1
        self.api.send_update(
            private_message(self._ids[DOCTOR], DOCTOR, first_name="Ada", text=answer)
        )
        self.wait(lambda: any(answer in t for t in self.api.texts(HANDED_OFF)), f"relay back {tag}")

    # --- the checks ---------------------------------------------------------------------

    def emergencies_answered_in_time(self) -> None:
        emergencies = [s for s in self.sent if s.emergency]
        deadline = time.monotonic() + EMERGENCY_S + 0.5  # the watcher polls every 20 ms
        while any(s.answered_at is None for s in emergencies) and time.monotonic() < deadline:
            time.sleep(0.02)
        late = [
            (s.channel, s.text[:30], None if s.answered_at is None else s.answered_at - s.at)
            for s in self.sent
            if s.emergency and (s.answered_at is None or s.answered_at - s.at > EMERGENCY_S)
        ]
        assert not late, f"emergencies answered late or never: {late}\n{self.carebot.tail()}"

    def everything_stored(self) -> None:
        with sqlite3.connect(self.carebot.db) as db:
            stored = {
                row[0] for row in db.execute("SELECT text FROM messages WHERE direction='in'")
            }
        missing = [(s.channel, s.text[:40]) for s in self.sent if s.text not in stored]
        assert not missing, f"messages not stored: {missing}"

    def nothing_twice(self) -> None:
        for chat in {int(s.chat) for s in self.sent if s.channel == "telegram"}:
            pairs = [
                (m.get("reply_to_message", {}).get("message_id"), m.get("text"))
                for m in self.api.sent(chat)
            ]
            repeated = {p for p in pairs if pairs.count(p) > 1}
            assert not repeated, f"chat {chat} got a reply twice: {repeated}"
            full = sum("Do not wait for more messages" in (t or "") for _, t in pairs)
            emergencies = sum(
                1 for s in self.sent if s.emergency and s.chat == str(chat) and s.channel != "web"
            )
            assert full <= emergencies, f"chat {chat}: {full} instructions for {emergencies}"
        with sqlite3.connect(self.carebot.db) as db:
            doubled = db.execute(
                "SELECT reply_to_id, COUNT(*) FROM messages WHERE direction='out' "
                "AND reply_to_id IS NOT NULL GROUP BY reply_to_id HAVING COUNT(*) > 1"
            ).fetchall()
        assert not doubled, f"messages with two stored replies: {doubled}"

    def log_is_clean(self) -> None:
        """The process's whole log holds neither the bot token nor what patients wrote."""
        log = self.carebot.log.read_text(errors="replace")
        assert TOKEN not in log, "the bot token is in the log"
        leaked = [s.text for s in self.sent if len(s.text) > 20 and s.text in log]
        assert not leaked, f"patient text in the log: {leaked[:3]}"

    def all_checks(self) -> None:
        self.emergencies_answered_in_time()
        self.everything_stored()
        self.nothing_twice()
        self.log_is_clean()

    def close(self) -> None:
        self._stopping.set()
        self.carebot.stop()
