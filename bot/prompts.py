"""Prompt templates and patient texts from `prompts/`, validated on load, strict on render."""

from __future__ import annotations

import string
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from bot.errors import ConfigError

# Filled in by the engine for every patient text, so texts need not declare them.
GLOBAL_VARIABLES = frozenset({"emergency_number"})


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


class Template(BaseModel):
    """One prompt template: header facts plus the body with `{variable}` placeholders."""

    name: str
    purpose: str
    variables: list[str] = Field(default_factory=list)
    required: list[str] = Field(default_factory=list)
    body: str

    def render(self, **values: object) -> str:
        """Fill every declared variable; a missing or undeclared one is an error."""
        missing = set(self.variables) - values.keys()
        extra = values.keys() - set(self.variables)
        if missing or extra:
            raise ConfigError(
                f"prompt {self.name}: missing {sorted(missing)}, undeclared {sorted(extra)}"
            )
        return self.body.format(**values)


class PatientText(BaseModel):
    """A patient-facing text in each supported language."""

    variables: list[str] = Field(default_factory=list)
    languages: dict[str, str]


def _split_front_matter(path: Path) -> tuple[dict[str, object], str]:
    raw = path.read_text(encoding="utf-8")
    if not raw.startswith("---\n"):
        raise ConfigError(f"{path}: missing the '---' header")
    header, _, body = raw[4:].partition("\n---\n")
    meta = yaml.safe_load(header)
    if not isinstance(meta, dict):
        raise ConfigError(f"{path}: the header is not a mapping")
    return meta, body.strip() + "\n"


class PromptLibrary:
    """All templates of a `prompts/` folder, checked when loaded."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise ConfigError(f"CAREBOT_PROMPTS_DIR: {folder} is not a folder")
        self.templates: dict[str, Template] = {}
        for path in sorted(folder.glob("*.md")):
            meta, body = _split_front_matter(path)
            template = Template.model_validate({**meta, "body": body})
            self._check(template, path)
            self.templates[template.name] = template
        self.texts = self._load_texts(folder / "patient_texts.yaml")

    @staticmethod
    def _check(template: Template, path: Path) -> None:
        used = _fields(template.body)
        if used != set(template.variables):
            raise ConfigError(
                f"{path}: body uses {sorted(used)} but the header declares "
                f"{sorted(template.variables)}"
            )
        absent = [r for r in template.required if r not in template.body]
        if absent:
            raise ConfigError(f"{path}: required elements missing: {absent}")

    @staticmethod
    def _load_texts(path: Path) -> dict[str, PatientText]:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        texts: dict[str, PatientText] = {}
        for key, entry in data["texts"].items():
            variables = list(entry.pop("variables", []))
            text = PatientText(variables=variables, languages=entry)
            allowed = set(variables) | GLOBAL_VARIABLES
            for lang, body in text.languages.items():
                if not _fields(body) <= allowed:
                    raise ConfigError(f"{path}: text {key}.{lang} uses undeclared variables")
            texts[key] = text
        return texts

    def template(self, name: str) -> Template:
        """Return the template called `name`."""
        try:
            return self.templates[name]
        except KeyError:
            raise ConfigError(f"no prompt template named {name!r}") from None

    def text(self, key: str, language: str, **values: object) -> str:
        """Render a patient text in `language`, falling back to English."""
        entry = self.texts[key]
        body = entry.languages.get(language) or entry.languages["en"]
        missing = (set(entry.variables) | GLOBAL_VARIABLES) - values.keys()
        if missing & _fields(body):
            raise ConfigError(f"patient text {key}: missing {sorted(missing)}")
        return body.format(**values).strip()
