"""Settings: one object, CAREBOT_ variables, conventional names, failures that name the variable."""

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError


def test_defaults_are_embedded(tmp_path: Path) -> None:
    s = load_settings()
    assert s.llm_backend == "embedded"
    assert s.redis_url is None
    assert s.sqlalchemy_url.startswith("sqlite:///") and s.sqlalchemy_url.endswith("carebot.db")


def test_conventional_names_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6390/2")
    monkeypatch.setenv("DATABASE_URL", "postgresql://carebot@127.0.0.1/carebot")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    monkeypatch.setenv("CAREBOT_LLM_BACKEND", "openai")
    monkeypatch.setenv("CAREBOT_LLM_BASE_URL", "http://10.0.0.5:8000/v1")
    s = load_settings()
    assert s.redis_url is not None and s.redis_url.get_secret_value() == "redis://127.0.0.1:6390/2"
    assert s.sqlalchemy_url == "postgresql://carebot@127.0.0.1/carebot"
    assert s.telegram_bot_token is not None and s.telegram_bot_token.get_secret_value() == "123:abc"
    assert (s.llm_backend, s.llm_base_url) == ("openai", "http://10.0.0.5:8000/v1")


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CAREBOT_EMERGENCY_NUMBER=999\nREDIS_URL=redis://h:1/0\n")
    s = load_settings()
    assert s.emergency_number == "999"
    assert s.redis_url is not None and s.redis_url.get_secret_value() == "redis://h:1/0"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CAREBOT_LLM_BACKEND", "gpt-9"),
        ("CAREBOT_LLM_BASE_URL", "localhost:8000"),
        ("CAREBOT_LLM_TIMEOUT_S", "-1"),
        ("CAREBOT_WEB_PORT", "70000"),
        ("REDIS_URL", "localhost:6379"),
        ("CAREBOT_EMERGENCY_NUMBER", "call an ambulance"),
    ],
)
def test_invalid_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert variable in str(err.value)


def test_every_setting_is_documented() -> None:
    from bot.config import REPO_ROOT, Settings, _variable_name

    readme = (REPO_ROOT / "README.md").read_text()
    example = (REPO_ROOT / ".env.example").read_text()
    for field in Settings.model_fields:
        variable = _variable_name(field)
        assert f"`{variable}`" in readme, f"{variable} missing from the README table"
        assert f"{variable}=" in example, f"{variable} missing from .env.example"
