"""Encryption at rest (CAREBOT_MESSAGE_KEYS): patients' words never reach the database file in
clear, conversations and cases work as before, keys rotate, and a missing key fails loudly
instead of showing anyone ciphertext."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import text
from sqlmodel import Session, select

from bot.config import load_settings
from bot.errors import ConfigError, StorageUnavailable
from bot.models import TriageLevel
from bot.storage import encryption
from bot.storage.encryption import PREFIX
from bot.storage.key_commands import sealed_columns
from bot.storage.migrate import upgrade
from bot.storage.repository import Storage, make_engine
from bot.storage.tables import Escalation, Message
from tests.conftest import RuntimeFactory
from tests.fakes import scripted
from tests.test_engine import GROUNDED, incoming

SECRET = "Hortensia Vandersloot has had a fever since Monday"
K1, K2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def plaintext_afterwards() -> Iterator[None]:
    """The cipher is process-wide: other tests' databases are in clear."""
    yield
    encryption.configure(None)


def raw(storage: Storage, sql: str) -> list[str]:
    """Column values as stored, past the decrypting column type."""
    with storage.engine.connect() as conn:
        return [row[0] for row in conn.execute(text(sql)).all() if row[0]]


async def test_patients_words_are_stored_encrypted_and_read_back(
    make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    rt = await make_runtime(scripted(GROUNDED), message_keys=K1)
    reply = await rt.engine.handle(incoming(SECRET, consent=True))
    assert reply.kind == "answer"  # history, triage and answer all worked on decrypted text
    again = await rt.engine.handle(incoming("and now crushing chest pain and sweating"))
    assert again.level is TriageLevel.EMERGENCY
    with Session(rt.storage.engine) as s:
        assert SECRET in [m.text for m in s.exec(select(Message))]
    stored = raw(rt.storage, "SELECT text FROM messages")
    assert stored and all(v.startswith(PREFIX) for v in stored)
    assert all("Hortensia" not in v for v in stored)
    # Metadata (triage evidence quotes the patient), the chat's state and audit details too.
    for sql in ("SELECT meta FROM messages", "SELECT state FROM conversations"):
        sealed = [v for v in raw(rt.storage, sql) if v not in ("{}", "null")]
        assert sealed and all(v.startswith('{"sealed": "fernet:') for v in sealed), sql
    await rt.storage.scrub()
    for path in (tmp_path / "data").glob("carebot.db*"):
        assert b"Hortensia" not in path.read_bytes(), path.name


async def test_keys_rotate_and_old_plaintext_gets_encrypted(tmp_path: Path) -> None:
    db = tmp_path / "data" / "carebot.db"
    storage = Storage(make_engine(f"sqlite:///{db}"))
    upgrade(storage.engine)
    await storage.record_incoming(incoming("written before encryption", chat="a"))
    encryption.configure(SecretStr(K1))
    stored = await storage.record_incoming(incoming(SECRET, chat="b"))
    case_id = await storage.open_escalation(stored, TriageLevel.URGENT, ["r"], "triage")

    def summarise(s: Session) -> None:
        row = s.get(Escalation, case_id)
        assert row is not None
        row.summary, row.outcome = f"Summary: {SECRET}", "seen"
        s.add(row)
        s.commit()

    await storage.run(summarise)
    storage.engine.dispose()

    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREBOT_")}
    env.update(CAREBOT_DATA_DIR=str(tmp_path / "data"), CAREBOT_MESSAGE_KEYS=f"{K2},{K1}")
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot.cli", "keys", "rotate"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    done = out.stdout.removeprefix("re-encrypted: ").strip().split(", ")
    assert {"2 messages.text", "1 escalations.summary", "1 escalations.outcome"} <= set(done)
    assert K1 not in out.stdout + out.stderr and K2 not in out.stdout + out.stderr

    encryption.configure(SecretStr(K2))  # the old key is gone: everything opens with the new
    storage = Storage(make_engine(f"sqlite:///{db}"))
    values = raw(storage, "SELECT text FROM messages") + raw(
        storage, "SELECT summary FROM escalations"
    )
    assert values and all(v.startswith(PREFIX) for v in values)
    # JSON columns too (the chat's state, audit details): one sealed value each, or empty.
    for column in sealed_columns():
        for value in raw(storage, f"SELECT {column.name} FROM {column.table.name}"):
            assert value.startswith((PREFIX, '{"sealed": "fernet:')) or value in ("{}", "null")
    with Session(storage.engine) as s:
        texts = {m.text for m in s.exec(select(Message))}
        case = s.get(Escalation, case_id)
    assert {"written before encryption", SECRET} <= texts
    assert case is not None and case.summary == f"Summary: {SECRET}" and case.outcome == "seen"


async def test_without_the_key_the_database_refuses_rather_than_shows_ciphertext(
    tmp_path: Path,
) -> None:
    storage = Storage(make_engine(f"sqlite:///{tmp_path / 'carebot.db'}"))
    upgrade(storage.engine)
    encryption.configure(SecretStr(K1))
    await storage.record_incoming(incoming(SECRET))
    for keys in (None, SecretStr(K2)):  # unset, or a wrong key
        encryption.configure(keys)
        with pytest.raises(StorageUnavailable):
            await storage.run(lambda s: s.exec(select(Message)).all())


def test_a_bad_key_is_refused_at_start_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(message_keys=f"{K1},not-a-key-but-a-secret-nonetheless")
    assert "key 2 is not a Fernet key" in str(err.value)
    assert "not-a-key" not in str(err.value) and K1 not in str(err.value)


async def test_case_reasons_second_factor_secrets_and_session_memory_are_sealed_too(
    make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    from redis import Redis

    from bot.dashboard.accounts import StaffAccounts
    from bot.dashboard.roles import Role
    from bot.dashboard.two_factor import TwoFactor
    from tests.servers import RedisServer

    (tmp_path / "redis").mkdir()
    redis = RedisServer(tmp_path / "redis")
    try:
        rt = await make_runtime(scripted(GROUNDED), message_keys=K1, redis_url=redis.url)
        await rt.engine.handle(incoming(SECRET, consent=True))
        reply = await rt.engine.handle(incoming("I am pregnant and bleeding heavily"))
        assert reply.level is TriageLevel.EMERGENCY
        # The case's reasons (a rule id such as a pregnancy warning, beside the patient id).
        with Session(rt.storage.engine) as s:
            (case,) = s.exec(select(Escalation)).all()
        assert case.reasons and all(isinstance(r, str) for r in case.reasons)
        stored = raw(rt.storage, "SELECT reasons FROM escalations")
        assert stored and all(v.startswith('{"sealed": "fernet:') for v in stored)
        assert all("PREG" not in v and "EM-" not in v for v in stored)
        # A second-factor secret: a copied database mints no codes.
        account = await StaffAccounts(rt.storage).add(
            "ann", "Dr Ann", Role.DOCTOR, "cobalt lantern quietly"
        )
        secret = (await TwoFactor(rt.storage).begin(account)).secret
        sealed = raw(rt.storage, "SELECT totp_pending_secret FROM staff_users")
        assert sealed and sealed[0].startswith(PREFIX) and secret not in sealed[0]
        assert await TwoFactor(rt.storage).pending(account) is not None  # still usable
        # Session memory in Redis: sealed with the same keys.
        probe = Redis.from_url(redis.url, decode_responses=True)
        entries = [v for k in probe.keys("*session*") for v in probe.lrange(k, 0, -1)]
        assert entries and all(v.startswith(PREFIX) for v in entries)
        assert all("Hortensia" not in v for v in entries)
        history = await rt.sessions.history(incoming("x").chat_key)
        assert any("Hortensia" in t.text for t in history)  # read back through the keys
        # After the key is replaced (and the old one dropped), old entries are a cache miss,
        # never an error and never ciphertext shown; `keys rotate` drops them.
        encryption.configure(SecretStr(K2))
        assert await rt.sessions.history(incoming("x").chat_key) == []
        probe.close()
    finally:
        redis.stop()


async def test_keys_rotate_drops_session_memory_sealed_with_old_keys(tmp_path: Path) -> None:
    from redis import Redis

    from bot.memory.base import Turn
    from bot.memory.redis_store import RedisSessionStore
    from tests.servers import RedisServer

    (tmp_path / "redis").mkdir()
    redis = RedisServer(tmp_path / "redis")
    try:
        encryption.configure(SecretStr(K1))
        store = RedisSessionStore.from_url(redis.url, 3600, 20)
        await store.append("web:c1", Turn(role="patient", text=SECRET, message_id=1))
        await store.aclose()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAREBOT_")}
        env.pop("REDIS_URL", None)
        env.update(
            CAREBOT_DATA_DIR=str(tmp_path / "data"),
            CAREBOT_MESSAGE_KEYS=f"{K2},{K1}",
            CAREBOT_REDIS_URL=redis.url,
        )
        out = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bot.cli", "keys", "rotate"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert "session memory: 1 cached chat(s) dropped" in out.stdout
        probe = Redis.from_url(redis.url, decode_responses=True)
        assert probe.keys("*session*") == []
        probe.close()
    finally:
        redis.stop()
