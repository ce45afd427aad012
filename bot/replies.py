"""Patient-facing replies the engine assembles: emergency, follow-up questions, answers.

Every word comes from the patient texts in `prompts/*.yaml`, in the patient's language, with the
emergency number of the patient's locale filled in.
"""

from __future__ import annotations

import re
import unicodedata
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from bot.models import RedFlagHit, Reply, TriageLevel
from bot.prompts import PromptLibrary
from bot.triage.interview import Interview
from bot.triage.rules import TriageRules
from bot.triage.service import TriageResult
from rag.answer import Answer

# The locale of the message being handled: each channel request runs in its own task, so
# concurrent chats never see each other's locale.
LOCALE: ContextVar[str | None] = ContextVar("carebot_locale", default=None)
_CJK = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]{2,}")
_CONSENT_WORDS = frozenset(
    {
        "yes",
        "y",
        "yes please",
        "yes i agree",
        "i agree",
        "agree",
        "ok",
        "okay",
        "sure",
        "i consent",
        "consent",
        "/consent",
        "同意",
        "我同意",
        "是",
        "好",
        "好的",
        "可以",
    }
)


@dataclass(frozen=True)
class EngineOptions:
    """The engine's share of the settings."""

    emergency_number: str = "112"
    emergency_numbers: dict[str, str] | None = None  # per locale ("zh", "en-gb")
    default_language: str = "en"
    max_followup_rounds: int = 2
    max_message_chars: int = 4000
    history_turns: int = 20
    memory_s: float = 7 * 24 * 3600  # a silence this long starts a new episode
    keep_clinical_record: bool = True  # /forget keeps cases (bot/storage/clinical_record.py)


def detect_language(text: str, fallback: str) -> str:
    """Return "zh" for Chinese text, "en" for Latin-script words, else the fallback."""
    if _CJK.search(text):
        return "zh"
    return "en" if _LATIN.search(text) else fallback


def clean_text(text: str) -> str:
    """Normalise Unicode and drop NULs and other control characters (keep newlines, tabs)."""
    text = unicodedata.normalize("NFC", text)
    return "".join(
        ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs")
    )


def is_consent(text: str) -> bool:
    """Whether the patient's message says yes to the consent terms."""
    return text.strip().lower().rstrip(".!。！") in _CONSENT_WORDS


def triage_record(triage: TriageResult, asked: list[str] | None = None) -> dict[str, Any]:
    """Summarise a triage decision for the stored reply and the doctors' summary.

    Ids, levels and the evidence behind each rule (the patient's own words and their ConText
    flags: this record is stored with the conversation, never logged).
    """
    return {
        "level": triage.level.value,
        "rule_level": triage.rule_level.value,
        "decided_by": triage.decided_by,
        "rules": [h.rule_id for h in triage.hits],
        "evidence": {
            h.rule_id: [e.model_dump(exclude_none=True) for e in h.evidence] for h in triage.hits
        },
        "complaints": triage.complaints,
        "screens": {q: a.value for q, a in triage.screens.items()},
        "asked": list(asked or []),
        "model_level": triage.model.level.value if triage.model else None,
        "model_error": triage.model_error,
        "missing": list(triage.unknown),
    }


class ReplyWriter:
    """Turn triage results and guideline answers into the words a patient reads."""

    def __init__(
        self,
        prompts: PromptLibrary,
        rules: TriageRules,
        options: EngineOptions,
        interview: Interview | None = None,
    ) -> None:
        self.prompts, self.rules, self.options = prompts, rules, options
        self.interview = interview or Interview()

    def emergency_number(self, *locales: str | None) -> str:
        """Return the emergency number for the first locale configured ("en-GB", then "en")."""
        numbers = self.options.emergency_numbers or {}
        for locale in locales:
            if locale:
                tag = locale.lower().replace("_", "-")
                for key in (tag, tag.split("-")[0]):
                    if key in numbers:
                        return numbers[key]
        return self.options.emergency_number

    def text(self, key: str, language: str, **values: object) -> str:
        """Render a patient text with the emergency number of the current locale."""
        number = self.emergency_number(LOCALE.get(), language)
        return self.prompts.text(key, language, emergency_number=number, **values)

    def notice(self, key: str, language: str, **values: object) -> Reply:
        """A reply that is only a patient text (commands, unsupported content)."""
        return Reply(text=self.text(key, language, **values), kind="notice")

    def emergency(self, hits: list[RedFlagHit], language: str) -> Reply:
        """The emergency instruction, explained by the rules that fired."""
        explanation = " ".join(
            dict.fromkeys(h.explanation for h in self.rules.emergencies(hits) or hits)
        )
        return Reply(
            text=self.text("emergency", language, explanation=explanation),
            kind="emergency",
            level=TriageLevel.EMERGENCY,
            red_flags=hits,
        )

    def reminder(self, emergencies: list[RedFlagHit], language: str) -> str:
        """The warning kept in front of later replies once an emergency was announced."""
        explanation = " ".join(dict.fromkeys(h.explanation for h in emergencies))
        return self.text("emergency_reminder", language, explanation=explanation)

    def level_advice(self, triage: TriageResult, language: str) -> str:
        """What to do at this triage level, with the reasons of the strongest rules."""
        top = [h for h in triage.hits if h.level is triage.level]
        explanation = " ".join(dict.fromkeys(h.explanation for h in top[:2]))
        return self.text(f"advice_{triage.level.value}", language, explanation=explanation)

    def followup(self, triage: TriageResult, language: str) -> Reply:
        """Ask this round's red-flag questions, numbered so they can be answered in order."""
        asks = []
        for number, qid in enumerate(triage.questions, start=1):
            wording = self.interview.question(qid).text
            asks.append(f"{number}. {wording.get(language) or wording['en']}")
        if triage.level is TriageLevel.URGENT:
            # An urgent patient gets the advice now; the questions only help the doctor.
            head = [
                self.level_advice(triage, language),
                self.text("followup_urgent_intro", language),
            ]
        else:
            head = [self.text("followup_intro", language)]
        return Reply(
            text="\n\n".join(head) + "\n" + "\n".join(asks),
            kind="followup",
            level=triage.level,
            red_flags=triage.hits,
            triage=triage_record(triage, asked=triage.questions),
        )

    def answer(
        self,
        answer: Answer,
        language: str,
        triage: TriageResult,
        truncated: bool,
    ) -> Reply:
        """The guideline answer with level advice, citations and the disclaimer."""
        parts = []
        if truncated:
            parts.append(self.text("too_long", language, limit=self.options.max_message_chars))
        general = triage.general
        if general:
            parts.append(self.text("general_question_note", language))
        elif triage.level is not TriageLevel.EMERGENCY:  # emergencies carry their reminder
            parts.append(self.level_advice(triage, language))
        if not answer.found:
            parts.append(self.text("no_guideline", language))
        else:
            parts.append(answer.text)
            sources = [
                f"[{c.number}] {c.title} - {c.section} ({c.source})" for c in answer.citations
            ]
            parts.append(self.text("sources_heading", language) + "\n" + "\n".join(sources))
        parts.append(self.text("disclaimer", language))
        return Reply(
            text="\n\n".join(parts),
            kind="answer",
            level=None if general else triage.level,
            red_flags=triage.hits,
            citations=answer.citations,
            grounded=answer.grounded if answer.found else None,
            llm_error=answer.llm_error,
            triage=triage_record(triage),
        )
