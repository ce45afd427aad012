"""Secrets stay secret: the bot token, webhook secret, API keys and database password are
never logged, echoed by a configuration error, or shown in a settings repr; and patient text
never reaches the logs, at any level a deployment would use.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from bot.channels.telegram import start_telegram
from bot.config import load_settings
from bot.errors import ConfigError
from bot.log_safety import protect_logs
from bot.runtime import Runtime
from tests.bot_api import BotAPIServer, private_message
from tests.conftest import RuntimeFactory
from tests.fakes import scripted

TOKEN = "987654321:AAH-secret-token-value-for-the-log-scan"
WEBHOOK_SECRET = "webhook-secret-value-0123456789-abcdef"  # pragma: allowlist secret
SENTINEL = "Zebulon Quixworth"  # a patient's name: must never be logged
PASSWORD = "db-password-value-x9"


def _scan(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every captured line that holds a secret or the patient's name."""
    return [
        line
        for line in caplog.text.splitlines()
        if any(s in line for s in (TOKEN, WEBHOOK_SECRET, SENTINEL, PASSWORD))
    ]


async def test_polling_webhook_and_errors_log_no_token_and_no_patient_text(
    api: BotAPIServer,
    make_runtime: RuntimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level (httpx logs URLs at INFO)
    settings_seen = []

    async def start(**overrides: object) -> Runtime:
        rt = await make_runtime(
            scripted("Rest and drink fluids [1]."),
            telegram_bot_token=TOKEN,
            telegram_api_base_url=api.base_url,
            **overrides,
        )
        settings_seen.append(rt.settings)
        protect_logs(rt.settings)  # what every `carebot` command does at start-up
        await start_telegram(rt)
        return rt

    await start()
    api.fail_next("sendMessage", 1, error_code=400)  # a real refusal, retried by the sweep
    api.drop_connection_next("getUpdates")  # a real network error while polling
    api.send_update(private_message(1, 31, text=f"My name is {SENTINEL} and I have chest pain"))
    assert await api.await_for(lambda: bool(api.texts(31)), 30)
    api.send_update(private_message(2, 31, text=f"{SENTINEL} again: crushing chest pain"))
    assert await api.await_for(lambda: len(api.texts(31)) >= 2, 30)

    rt = await start(
        telegram_webhook_url="http://127.0.0.1:8000/hook",
        telegram_webhook_secret=WEBHOOK_SECRET,
    )
    assert rt.telegram_webhook is not None  # the web app's route calls this (no HTTP here)
    update = {"update_id": 900, "message": private_message(1, 32, text=f"I am {SENTINEL}")}
    body = json.dumps(update).encode()
    assert await rt.telegram_webhook(body, "a wrong secret") == 403
    assert await rt.telegram_webhook(b"\x00 not json " + SENTINEL.encode(), WEBHOOK_SECRET) == 200
    assert await rt.telegram_webhook(body, WEBHOOK_SECRET) == 200
    assert await api.await_for(lambda: bool(api.texts(32)), 30)

    assert len(caplog.records) > 20  # the scan saw real traffic
    assert not _scan(caplog), _scan(caplog)[:5]
    for settings in settings_seen:  # nor does the settings object show them
        assert TOKEN not in repr(settings) and WEBHOOK_SECRET not in repr(settings)


def test_the_log_filter_redacts_secrets_and_bot_api_urls_in_messages_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    protect_logs(load_settings(telegram_bot_token=TOKEN))
    log = logging.getLogger("tests.some_library")
    log.info("POST https://api.telegram.org/bot%s/sendMessage", TOKEN)
    log.debug("another token 5566778899:%s", "A" * 35)  # not ours, still a Bot API token
    try:
        raise RuntimeError(f"failed to reach /bot{TOKEN}/getUpdates")
    except RuntimeError:
        log.exception("polling failed")
    assert TOKEN not in caplog.text and "A" * 35 not in caplog.text
    assert caplog.text.count("[redacted]") >= 3


def test_configuration_errors_do_not_echo_secret_values() -> None:
    with pytest.raises(ConfigError) as bad:
        load_settings(telegram_webhook_secret=f"{WEBHOOK_SECRET} has spaces!")
    assert "TELEGRAM_WEBHOOK_SECRET" in str(bad.value) and WEBHOOK_SECRET not in str(bad.value)
    with pytest.raises(ConfigError) as bad:
        load_settings(redis_url=42.5, llm_timeout_s=f"{PASSWORD}")
    assert PASSWORD in str(bad.value)  # not a secret: the bad value helps the operator
    with pytest.raises(ConfigError) as bad:
        load_settings(database_url=["postgresql://u:" + PASSWORD + "@db/carebot"])
    assert "DATABASE_URL" in str(bad.value) and PASSWORD not in str(bad.value)


def test_a_webhook_needs_its_secret() -> None:
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
        load_settings(telegram_bot_token=TOKEN, telegram_webhook_url="https://bot.example/hook")


def test_secrets_are_usable_but_not_shown() -> None:
    url = f"postgresql://carebot:{PASSWORD}@db:5432/carebot"
    settings = load_settings(
        telegram_bot_token=TOKEN,
        database_url=url,
        llm_api_key=PASSWORD,
        redis_url=f"redis://:{PASSWORD}@cache:6379/0",
    )
    assert settings.sqlalchemy_url == url  # what the database engine is given
    shown = repr(settings) + str(settings.model_dump())
    assert TOKEN not in shown and PASSWORD not in shown


def test_weak_secrets_and_clear_text_urls_are_refused() -> None:
    for weak in ("q", "s3cret-token", "a" * 31):  # Telegram would take them; a guesser too
        with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET") as bad:
            load_settings(telegram_webhook_secret=weak)
        assert "32-256" in str(bad.value) and f"'{weak}'" not in str(bad.value)
    assert load_settings(telegram_webhook_secret="a" * 32).telegram_webhook_secret is not None
    for name in ("telegram_webhook_url", "dashboard_url"):
        with pytest.raises(ConfigError, match="https://"):
            load_settings(telegram_webhook_secret=WEBHOOK_SECRET, **{name: "http://bot.org/x"})
        for local in ("http://127.0.0.1:8443/x", "http://localhost/x", "https://carebot.org/x"):
            with_secret = load_settings(telegram_webhook_secret=WEBHOOK_SECRET, **{name: local})
            assert getattr(with_secret, name) == local


def test_message_keys_short_passwords_and_new_http_loggers_stay_out_of_logs() -> None:
    from cryptography.fernet import Fernet

    from bot.log_safety import RedactSecrets, secrets_of

    weak = "pw9"  # a short database password

    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings = load_settings(
        message_keys=f"{first},{second}",
        database_url=f"postgresql://carebot:{weak}@db.example:5432/carebot?sslmode=require",
        signing_key="k" * 40,
    )
    redact = RedactSecrets(secrets_of(settings))
    line = f"rotating {second} (was {first}); password pw9 for db; signed with {'k' * 40}"
    cleaned = redact.redact(line)
    assert first not in cleaned and second not in cleaned and "k" * 40 not in cleaned
    assert "pw9 " not in cleaned and cleaned.count("[redacted]") == 4
    assert redact.redact("upw9x stays a word") == "upw9x stays a word"  # only the word itself
    protect_logs(settings)
    for name in ("httpx2", "httpcore2", "httpx", "httpcore"):
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING


async def test_connections_to_other_hosts_without_tls_are_named_or_refused(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.runtime import build_runtime
    from bot.transport import unencrypted

    plain = load_settings(
        data_dir=tmp_path,
        database_url=f"postgresql://carebot:{PASSWORD}@db.example:5432/carebot",
        redis_url=f"redis://:{PASSWORD}@cache.example:6379/0",
        llm_backend="openai",
        llm_base_url="http://gpu.example:8000/v1",
        chroma_url="http://chroma.example:8000",
    )
    found = unencrypted(plain)
    assert [line.split(":")[0] for line in found] == [
        "database (PostgreSQL)",
        "Redis",
        "LLM server",
        "Chroma",
    ]
    assert all(PASSWORD not in line for line in found)
    secure = load_settings(
        database_url=f"postgresql://carebot:{PASSWORD}@db.example/carebot?sslmode=verify-full",
        redis_url=f"rediss://:{PASSWORD}@cache.example:6379/0",
        llm_backend="openai",
        llm_base_url="https://gpu.example/v1",
        chroma_url="http://127.0.0.1:8000",  # this host: fine
    )
    assert unencrypted(secure) == []
    # Required: CareBot does not start rather than send patients' words in clear.
    strict = load_settings(
        data_dir=tmp_path, redis_url="redis://cache.example:6379/0", require_tls=True
    )
    with pytest.raises(ConfigError, match="Redis: use rediss://"):
        await build_runtime(strict)
