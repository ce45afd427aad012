"""Prompt templates and patient texts from `prompts/`, validated on load, strict on render.

The same checks guard the files and every draft an operator publishes: placeholders are plain
names (a format specification such as `{explanation:>100000000}` would let a text pad itself
to gigabytes, and `{0}` or `{x.attr}` would fail or reach into objects when rendered), no text
is empty, a text's `required` placeholders appear in every language (the emergency number in
every text that tells a patient to call it), and a draft keeps what the shipped file declares.
Every model prompt, every text marked `safety_critical` and every text that mentions the
emergency number may change only with a clinician's approval (bot/prompt_store.py asks
`safety_changes`).
"""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from bot.errors import ConfigError

# Filled in by the engine for every patient text, so texts need not declare them.
GLOBAL_VARIABLES = frozenset({"emergency_number"})


def _fields(template: str) -> set[str]:
    """The placeholders of `template`; ConfigError unless each is a plain `{name}`."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:  # an unmatched brace
        raise ConfigError(f"{exc}; write a literal brace as {{{{ or }}}}") from None
    names = set()
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier():
            raise ConfigError(
                f"placeholder {{{name}}} is not allowed: use a plain name such as "
                "{emergency_number}"
            )
        if spec or conversion:
            shown = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise ConfigError(
                f"placeholder {{{shown}}} has a format specification; write {{{name}}} only"
            )
        names.add(name)
    return names


class Template(BaseModel):
    """One prompt template: header facts plus the body with `{variable}` placeholders."""

    name: str
    purpose: str
    variables: list[str] = Field(default_factory=list)
    required: list[str] = Field(default_factory=list)
    safety_critical: bool = False
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
    required: list[str] = Field(default_factory=list)  # placeholders every language must use
    safety_critical: bool = False  # changes need a clinician's approval
    languages: dict[str, str]

    @property
    def guarded(self) -> bool:
        """Whether a change needs a second person: marked safety-critical, or telling the
        patient about the emergency number in any language (what to do about danger), so an
        operator alone can never publish "do not call {emergency_number}"."""
        return self.safety_critical or any(
            "emergency_number" in _fields(body) for body in self.languages.values()
        )


class Sample(BaseModel):
    """A patient text rendered in one language, for a reviewer."""

    key: str
    language: str
    text: str


MAX_SOURCE_CHARS = 60_000  # a prompt longer than this is a mistake, not a prompt


def _split_front_matter(raw: str, where: str) -> tuple[dict[str, object], str]:
    if not raw.startswith("---\n"):
        raise ConfigError(f"{where}: missing the '---' header")
    header, _, body = raw[4:].partition("\n---\n")
    try:
        meta = yaml.safe_load(header)
    except yaml.YAMLError as exc:  # a draft's header is the operator's typing, not ours
        raise ConfigError(f"{where}: the header is not valid YAML ({exc})") from exc
    if not isinstance(meta, dict):
        raise ConfigError(f"{where}: the header is not a mapping")
    return meta, body.strip() + "\n"


def parse_template(raw: str, where: str) -> Template:
    """Read and check one template's source (header and body)."""
    meta, body = _split_front_matter(raw, where)
    try:
        template = Template.model_validate({**meta, "body": body})
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    if not template.body.strip():
        raise ConfigError(f"{where}: the body is empty")
    try:
        used = _fields(template.body)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if used != set(template.variables):
        raise ConfigError(
            f"{where}: body uses {sorted(used)} but the header declares "
            f"{sorted(template.variables)}"
        )
    absent = [r for r in template.required if r not in template.body]
    if absent:
        raise ConfigError(f"{where}: required elements missing: {absent}")
    return template


def parse_texts(raw: str, where: str) -> dict[str, PatientText]:
    """Read and check the patient texts' source (YAML)."""
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("texts"), dict):
        raise ConfigError(f"{where}: needs a 'texts' mapping")
    texts: dict[str, PatientText] = {}
    for key, entry in data["texts"].items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: text {key} is not a mapping")
        entry = dict(entry)
        declared = {
            field: entry.pop(field)
            for field in ("variables", "required", "safety_critical")
            if field in entry
        }
        try:
            text = PatientText(**declared, languages=entry)
        except ValueError as exc:
            raise ConfigError(f"{where}: text {key}: {exc}") from exc
        _check_text(text, f"{where}: text {key}")
        texts[key] = text
    return texts


def _check_text(text: PatientText, where: str) -> None:
    if "en" not in text.languages:
        raise ConfigError(f"{where} needs an English version")
    allowed = set(text.variables) | GLOBAL_VARIABLES
    unknown = set(text.required) - allowed
    if unknown:
        raise ConfigError(f"{where}: required {sorted(unknown)} are not placeholders it may use")
    for lang, body in text.languages.items():
        if not body.strip():
            raise ConfigError(f"{where}.{lang} is empty")
        try:
            fields = _fields(body)
        except ConfigError as exc:
            raise ConfigError(f"{where}.{lang}: {exc}") from None
        if not fields <= allowed:
            raise ConfigError(f"{where}.{lang} uses undeclared variables")
        absent = [f"{{{name}}}" for name in text.required if name not in fields]
        if absent:
            raise ConfigError(f"{where}.{lang} must contain {', '.join(absent)}")


class PromptLibrary:
    """All templates of a `prompts/` folder, checked when loaded; published versions
    (bot/prompt_store.py) replace them while CareBot runs."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise ConfigError(f"CAREBOT_PROMPTS_DIR: {folder} is not a folder")
        self.templates: dict[str, Template] = {}
        self.sources: dict[str, str] = {}  # name -> the source in use
        self.versions: dict[str, int] = {}  # name -> version in use (the files are 1)
        for path in sorted(folder.glob("*.md")):
            raw = path.read_text(encoding="utf-8")
            template = parse_template(raw, str(path))
            self.templates[template.name] = template
            self.sources[template.name], self.versions[template.name] = raw, 1
        # Patient texts come in groups, one file each (consent, emergency, level advice...);
        # a key belongs to exactly one group.
        self.groups: dict[str, dict[str, PatientText]] = {}
        for path in sorted(folder.glob("*.yaml")):
            raw = path.read_text(encoding="utf-8")
            name = path.stem
            self.groups[name] = parse_texts(raw, str(path))
            self.sources[name], self.versions[name] = raw, 1
        if not self.groups:
            raise ConfigError(f"{folder}: no patient texts (*.yaml)")
        self.texts = self._merged()
        self.shipped = dict(self.sources)  # what the files say, for validation

    def names(self) -> list[str]:
        """Every prompt's name."""
        return sorted(self.sources)

    def purpose(self, name: str) -> str:
        """What a prompt is for, from its header."""
        if name in self.templates:
            return self.templates[name].purpose
        header = yaml.safe_load(self.sources.get(name, "")) if name in self.groups else None
        return str(header.get("purpose", "")) if isinstance(header, dict) else ""

    def _merged(
        self, replace: tuple[str, dict[str, PatientText]] | None = None
    ) -> dict[str, PatientText]:
        groups = dict(self.groups)
        if replace is not None:
            groups[replace[0]] = replace[1]
        merged: dict[str, PatientText] = {}
        for name, texts in sorted(groups.items()):
            for key in texts:
                if key in merged:
                    raise ConfigError(f"patient text {key} is in more than one file ({name})")
            merged.update(texts)
        return merged

    def problems(self, name: str, raw: str) -> list[str]:
        """What is wrong with a draft of prompt `name` (empty: it may be published).

        A draft keeps the template's name and declared variables (the code fills exactly
        those), its required elements, and for patient texts every text and its variables.
        """
        if name not in self.sources:
            return [f"there is no prompt named {name!r}"]
        if not raw.strip():
            return ["the draft is empty"]
        if len(raw) > MAX_SOURCE_CHARS:
            return [f"the draft is {len(raw):,} characters; the limit is {MAX_SOURCE_CHARS:,}"]
        try:
            if name in self.groups:
                return self._text_problems(name, parse_texts(raw, "draft"))
            draft = parse_template(raw, "draft")
        except ConfigError as exc:
            return [str(exc)]
        shipped = parse_template(self.shipped[name], name)
        found = []
        if draft.name != name:
            found.append(f"the header's name must stay {name!r}")
        if set(draft.variables) != set(shipped.variables):
            found.append(
                f"variables must stay {sorted(shipped.variables)} (CareBot fills exactly these); "
                f"the draft declares {sorted(draft.variables)}"
            )
        lost = [r for r in shipped.required if r not in draft.required]
        if lost:
            found.append(f"required elements cannot be dropped: {lost}")
        if shipped.safety_critical and not draft.safety_critical:
            found.append("the template stays safety_critical")
        return found

    def _text_problems(self, name: str, draft: dict[str, PatientText]) -> list[str]:
        shipped = parse_texts(self.shipped[name], name)
        found = [f"text {k} is missing" for k in shipped if k not in draft]
        others = {k for group, texts in self.groups.items() if group != name for k in texts}
        found += [f"text {k} belongs to another file" for k in draft if k in others]
        for key, kept in shipped.items():
            text = draft.get(key)
            if text is None:
                continue
            if set(text.variables) != set(kept.variables):
                found.append(f"text {key} must keep variables {sorted(kept.variables)}")
            lost = sorted(set(kept.required) - set(text.required))
            if lost:
                found.append(f"text {key} must keep required {lost}")
            if kept.safety_critical and not text.safety_critical:
                found.append(f"text {key} stays safety_critical")
            gone = sorted(kept.languages.keys() - text.languages.keys())
            if gone:  # its patients would silently get another language
                found.append(f"text {key} must keep its {', '.join(gone)} version")
        return found

    def safety_changes(self, name: str, old: str, new: str) -> list[str]:
        """The safety-critical texts (or template) that `new` changes from `old`: publishing
        such a change needs a clinician's approval. Both sources must be valid."""
        if name in self.groups:
            after = parse_texts(new, name)
            try:
                before = parse_texts(old, name)
            except ConfigError:  # written under older rules: every safety text counts as new
                before = {}
            return [
                key
                for key, text in after.items()
                if (text.guarded or (key in before and before[key].guarded))
                and before.get(key) != text
            ]
        # Every model prompt: it decides what the model says to patients, and the triage
        # prompt what it concludes about their danger.
        return [name] if old != new else []

    def render_texts(
        self, raw: str, keys: list[str], number_for: Callable[[str], str]
    ) -> list[Sample]:
        """Render texts `keys` of a patient-text source in every language as patients would
        read them, with the emergency number for that language and other placeholders shown
        as `[name]`: what a reviewer checks before approving."""
        texts = parse_texts(raw, "draft")
        samples = []
        for key in keys:
            text = texts[key]
            for lang, body in sorted(text.languages.items()):
                filled = {v: f"[{v}]" for v in text.variables}
                filled["emergency_number"] = number_for(lang)
                samples.append(Sample(key=key, language=lang, text=body.format(**filled).strip()))
        return samples

    def apply(self, name: str, raw: str, version: int) -> None:
        """Use a published version from now on (raises ConfigError if it is not valid)."""
        found = self.problems(name, raw)
        if found:
            raise ConfigError(f"prompt {name} version {version}: " + "; ".join(found))
        if name in self.groups:
            group = parse_texts(raw, name)
            self.texts = self._merged((name, group))
            self.groups[name] = group
        else:
            self.templates[name] = parse_template(raw, name)
        self.sources[name], self.versions[name] = raw, version

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
