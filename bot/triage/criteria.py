"""Triage criteria from the guideline pack: each page's "when to get help" statements.

Every guideline page says when to see a doctor, when to get urgent help today and when to call
the emergency number. Those bullets are triage criteria, authored once per page in its front
matter (docs/triage.md, "Criteria from the guideline pages"):

    criteria:
      - id: spreads-to-arm-or-jaw        # stable within the page
        level: emergency                 # = the section the bullet is in
        finding: "the pain spreads to your arms, back, neck or jaw"   # the bullet itself
        says: ["the pain is going down my left arm", ...]   # how patients word it
        not: ["my arm aches after the gym"]                  # near misses (set the threshold)
        when: {age_under: 5}                                 # optional conditions on facts
        source: https://www.nhs.uk/conditions/chest-pain/

Each criterion becomes a triage rule (`TriageRules(criteria=...)`) whose one finding is matched
by meaning (`SemanticMatcher`): a patient clause close to one of its `says` sentences, past the
criterion's own threshold and untouched by ConText, fires it, and the hit cites the page. A page
added to the pack therefore extends triage without a new rule. The hand-written rules stay as
the floor for the classic emergencies.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import rag
from bot.models import TriageLevel

logger = logging.getLogger(__name__)

# The bundled guideline pack (rag.library.BUNDLED, without importing retrieval's engines).
BUNDLED_PAGES = Path(rag.__file__).resolve().with_name("guidelines")
_FRONT = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)
_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# How a criterion's level is said to the patient, per language.
_SAYS = {
    "en": {
        TriageLevel.EMERGENCY: "The {title} guide says to call emergency services when {finding}.",
        TriageLevel.URGENT: "The {title} guide says to get medical help today when {finding}.",
        TriageLevel.ROUTINE: "The {title} guide says to see a doctor when {finding}.",
    },
    "zh": {
        TriageLevel.EMERGENCY: "《{title}》指南：{finding}，应立即拨打急救电话。",
        TriageLevel.URGENT: "《{title}》指南：{finding}，应今天就医。",
        TriageLevel.ROUTINE: "《{title}》指南：{finding}，应预约看医生。",
    },
}


class CriterionWhen(BaseModel):
    """Facts a criterion needs (the rules' `when`, limited to what a page can say)."""

    model_config = ConfigDict(extra="forbid")

    age_under: float | None = None
    age_at_least: float | None = None
    pregnant: bool | None = None
    sex: str | None = None


class CriterionSpec(BaseModel):
    """One criterion as authored in a page's front matter."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str
    level: TriageLevel
    finding: str = Field(min_length=2)
    says: list[str] = Field(min_length=3)
    near_misses: list[str] = Field(default_factory=list, alias="not")
    when: CriterionWhen = CriterionWhen()
    source: str


class Criterion(BaseModel):
    """A criterion with the page it comes from: what triage reads and cites."""

    spec: CriterionSpec
    page: str = Field(description="The page's file stem: the citation's key.")
    title: str
    language: str

    @property
    def rule_id(self) -> str:
        """The id the triage record carries: the page and the criterion."""
        return f"{self.page}/{self.spec.id}"

    @property
    def finding(self) -> str:
        """The finding name the matcher reports for this criterion."""
        return f"criterion:{self.rule_id}"

    def explanation(self) -> dict[str, str]:
        """The patient-facing reason, in the page's language (English as the fallback)."""
        finding = self.spec.finding.rstrip(";.。；")
        said = _SAYS.get(self.language, _SAYS["en"])[self.spec.level]
        text = said.format(title=self.title, finding=finding)
        return {self.language: text, "en": text} if self.language != "en" else {"en": text}


class CriteriaBook(BaseModel):
    """Every criterion of a guideline pack, in page order."""

    criteria: list[Criterion] = Field(default_factory=list)

    @classmethod
    def load(
        cls,
        sources: Iterable[Path] = (BUNDLED_PAGES,),
        admit: Callable[[Path, bytes], bool] | None = None,
    ) -> CriteriaBook:
        """Read the criteria of every Markdown page in these files or folders (with `admit`,
        of the pages it admits: a page not approved sets no criterion).

        A page whose front matter is unreadable or whose criteria do not validate is skipped
        with a warning naming it: one bad page must not take triage down.
        """
        criteria: list[Criterion] = []
        seen: set[str] = set()
        for path in _pages(sources):
            try:
                raw = path.read_bytes()
                if admit is not None and not admit(path, raw):
                    continue
                found = _page_criteria(path, raw.decode("utf-8"))
            except (
                OSError,
                UnicodeDecodeError,
                yaml.YAMLError,
                ValidationError,
                ValueError,
            ) as exc:
                logger.warning("guideline %s: criteria skipped (%s)", path.name, type(exc).__name__)
                continue
            for criterion in found:
                if criterion.rule_id in seen:
                    logger.warning("guideline %s: criterion id repeated", path.name)
                    continue
                seen.add(criterion.rule_id)
                criteria.append(criterion)
        return cls(criteria=criteria)

    def __len__(self) -> int:
        return len(self.criteria)


def _pages(sources: Iterable[Path]) -> list[Path]:
    pages: list[Path] = []
    for source in sources:
        if source.is_dir():
            pages += sorted(source.rglob("*.md"))
        elif source.suffix.lower() == ".md" and source.is_file():
            pages.append(source)
    return pages


def _page_criteria(path: Path, raw: str) -> list[Criterion]:
    match = _FRONT.match(raw)
    if not match:
        return []
    meta = yaml.safe_load(match.group(1)) or {}
    if not isinstance(meta, dict) or not meta.get("criteria"):
        return []
    specs = [CriterionSpec.model_validate(c) for c in meta["criteria"]]
    for spec in specs:
        if not _ID.match(spec.id):
            raise ValueError(f"criterion id {spec.id!r} is not kebab-case")
    title = str(meta.get("title") or path.stem)
    language = str(meta.get("language") or "en")
    return [Criterion(spec=s, page=path.stem, title=title, language=language) for s in specs]
