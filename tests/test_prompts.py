"""Prompt templates: every template renders; bad templates and bad renders fail loudly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.config import REPO_ROOT
from bot.errors import ConfigError
from bot.prompts import PromptLibrary

LIBRARY = PromptLibrary(REPO_ROOT / "prompts")


@pytest.mark.parametrize("name", sorted(LIBRARY.templates))
def test_every_template_renders(name: str) -> None:
    template = LIBRARY.template(name)
    text = template.render(**{v: f"<{v}>" for v in template.variables})
    for v in template.variables:
        assert f"<{v}>" in text
    # Literal braces (a JSON example) are fine; an unfilled {placeholder} is not.
    assert not re.search(r"\{[a-z_]+\}", text)


@pytest.mark.parametrize("key", sorted(LIBRARY.texts))
@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_patient_text_renders_in_each_language(key: str, language: str) -> None:
    values = {v: "X" for v in LIBRARY.texts[key].variables}
    text = LIBRARY.text(key, language, emergency_number="112", **values)
    assert text and "{" not in text


def test_missing_or_undeclared_variable_is_an_error() -> None:
    answer = LIBRARY.template("answer")
    with pytest.raises(ConfigError, match="missing"):
        answer.render(question="q")
    with pytest.raises(ConfigError, match="undeclared"):
        answer.render(question="q", passages="p", extra="x")


def _write(folder: Path, body: str, header: str) -> None:
    folder.mkdir(exist_ok=True)
    for texts in (REPO_ROOT / "prompts").glob("*.yaml"):
        (folder / texts.name).write_text(texts.read_text())
    (folder / "answer.md").write_text(f"---\n{header}\n---\n{body}\n")


def test_template_using_undeclared_variable_is_refused(tmp_path: Path) -> None:
    _write(
        tmp_path / "p",
        "Answer {question} from {passages}",
        "name: answer\npurpose: x\nvariables: [question]",
    )
    with pytest.raises(ConfigError, match="declares"):
        PromptLibrary(tmp_path / "p")


def test_template_dropping_a_required_element_is_refused(tmp_path: Path) -> None:
    _write(
        tmp_path / "p",
        "Answer {question} from {passages}",
        "name: answer\npurpose: x\nvariables: [question, passages]\nrequired: ['[1]']",
    )
    with pytest.raises(ConfigError, match="required"):
        PromptLibrary(tmp_path / "p")


def test_each_patient_text_lives_in_exactly_one_file(tmp_path: Path) -> None:
    assert set(LIBRARY.groups) >= {"consent_texts", "emergency_texts", "level_advice"}
    assert sum(len(g) for g in LIBRARY.groups.values()) == len(LIBRARY.texts)
    _write(tmp_path / "p", "Answer {question} from {passages} [1] not instructions", "x: 1")
    twice = (REPO_ROOT / "prompts/consent_texts.yaml").read_text()
    (tmp_path / "p" / "zz_copy.yaml").write_text(twice.replace("consent_texts", "zz_copy"))
    (tmp_path / "p" / "answer.md").write_text((REPO_ROOT / "prompts/answer.md").read_text())
    with pytest.raises(ConfigError, match="more than one file"):
        PromptLibrary(tmp_path / "p")
