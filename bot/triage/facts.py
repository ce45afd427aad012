"""Key clinical facts read from what the patient wrote: age, pregnancy, duration, vital signs.

Rules use these facts as conditions ("fever in a baby under 3 months"), the vital signs feed a
NEWS2-style score, and the facts that are still unknown decide the follow-up questions.
Everything here is deterministic regular expressions over English and Chinese text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel

_NUMBER_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "fourteen": 14,
    "few": 3,
    "several": 3,
    "couple of": 2,
    "一": 1,
    "两": 2,
    "二": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
    "十": 10,
}
_UNIT_DAYS = {
    "minute": 1 / 1440,
    "min": 1 / 1440,
    "hour": 1 / 24,
    "hr": 1 / 24,
    "day": 1,
    "night": 1,
    "week": 7,
    "wk": 7,
    "month": 30,
    "year": 365,
    "yr": 365,
    "分钟": 1 / 1440,
    "小时": 1 / 24,
    "天": 1,
    "日": 1,
    "周": 7,
    "星期": 7,
    "个月": 30,
    "月": 30,
    "年": 365,
}
_NUM = (
    r"(\d+(?:\.\d+)?|a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
    r"fourteen|few|several|couple of)"
)
_EN_UNIT = r"(minute|min|hour|hr|day|night|week|wk|month|year|yr)s?"

# "for 3 days", "3-day history", "3 days ago", "past two weeks", "5 days' duration".
_DURATION_EN = re.compile(
    rf"\b{_NUM}[\s-]+{_EN_UNIT}(?:'|’)?(?=[\s-]+(?:history|ago|duration|of|now|long|before|earlier)|\b)",
    re.IGNORECASE,
)
_DURATION_CUE = re.compile(
    r"(for|since|past|last|over|about|almost|nearly|already|history|ago|duration|started|began|"
    r"had|lasting|lasted|after)",
    re.IGNORECASE,
)
_DURATION_ZH = re.compile(r"(\d+|[一两二三四五六七八九十]+)\s*(分钟|小时|天|日|周|星期|个月|年)")
# "for the past month", "over the last few weeks": a duration without a number.
_PAST_UNIT = re.compile(
    r"\b(?:the|this) (?:past|last) (few |couple of )?(day|night|week|month|year)s?\b|"
    r"(?:这|近|最近)(几|一|两)?(天|周|个月|年)",
    re.IGNORECASE,
)
_YESTERDAY = re.compile(r"\b(since yesterday|last night|yesterday)\b|昨天|昨晚", re.IGNORECASE)
_TODAY = re.compile(
    r"\b(this morning|today|tonight|an hour ago|just now|just started)\b|今天|刚才", re.IGNORECASE
)

_AGE_EN = re.compile(
    rf"\b{_NUM}[\s-]*(year|yr|month|week|day)s?[\s-]*old\b|\baged?\s+(\d+)\b|"
    r"\b(?:i'?m|i am|he'?s|she'?s|he is|she is)\s+(\d{1,3})\b"
    r"(?!\s*(?:kg|lb|cm|%|[\s-]*(?:years?|yrs?|months?|weeks?|days?)\b))",
    re.IGNORECASE,
)
_AGE_ZH = re.compile(r"(\d+)\s*(岁|个月大|个月的|周大)")
_INFANT = re.compile(r"\b(new-?born|neonate|infant|baby|babies)\b|婴儿|宝宝|新生儿", re.IGNORECASE)
_TODDLER = re.compile(r"\btoddler\b|幼儿", re.IGNORECASE)

_PREGNANT = re.compile(
    r"\b(pregnan\w*|expecting a baby|weeks gestation|weeks? (gone|along)|"
    # "I'm 31 weeks", "she's 36 weeks with...": gestation said the way mothers say it (a
    # baby's age is "N weeks old").
    r"(i'?m|i am|she'?s|she is|wife is|partner is) \d{1,2} weeks?(?! old)( pregnant)?|"
    r"positive (pregnancy )?test|my waters (have )?(broken|broke|gone))\b|怀孕|孕妇|妊娠|孕\d",
    re.I,
)
_NOT_PREGNANT = re.compile(r"\b(not|n't|never been) (currently )?pregnant\b|没有?怀孕|未怀孕", re.I)
_FEMALE = re.compile(
    r"\b(woman|women|female|girl|lady|she|her|mrs|ms|mother|mum|mom|wife)\b|女", re.I
)
_MALE = re.compile(r"\b(man|men|male|boy|gentleman|he|his|mr|father|dad|husband)\b|男", re.I)

_TEMP = re.compile(
    r"(?:temp(?:erature)?|thermometer|fever|febrile|pyrexia|burning up|体温|发烧|发热)"
    r"[^\d\n.;]{0,25}?"
    r"(\d{2,3}(?:\.\d)?)\s*(?:°|º|degrees?|度)?\s*([cf])?\b|"
    r"(\d{2,3}(?:\.\d)?)\s*(?:°|º|degrees?\s*)\s*([cf])\b",
    re.IGNORECASE,
)
_HEART = re.compile(
    r"(?:heart rate|pulse(?: rate)?|\bhr\b|心率|脉搏)[^\d\n]{0,15}(\d{2,3})|"
    r"(\d{2,3})\s*(?:bpm|beats (?:per|a|/) ?min)",
    re.IGNORECASE,
)
_RESP = re.compile(
    r"(?:respiratory rate|respiration rate|breathing rate|\brr\b|呼吸频率)[^\d\n]{0,15}(\d{1,2})|"
    r"(\d{1,2})\s*breaths? (?:per|a|/) ?min",
    re.IGNORECASE,
)
_BP = re.compile(
    r"(?:blood pressure|\bbp\b|血压)[^\d\n]{0,15}(\d{2,3})\s*/\s*\d{2,3}|"
    r"(\d{2,3})\s*/\s*\d{2,3}\s*mm\s*hg",
    re.IGNORECASE,
)
_SPO2 = re.compile(
    r"(?:saturation|sat(?:s|uration)?\b|spo2|o2 sat\w*|oxygen(?: level)?|血氧)"
    r"[^\d\n]{0,25}(\d{2,3})\s*%?|"
    r"(\d{2,3})\s*%\s*(?:on room air|oxygen saturation|saturation|spo2)",
    re.IGNORECASE,
)


_DIGIT = re.compile(r"\d")
FACTS_HEAD, FACTS_TAIL = 6_000, 2_000


class VitalSigns(BaseModel):
    """Vital signs the patient (or a clinician's note) stated."""

    heart_rate: float | None = None
    resp_rate: float | None = None
    systolic_bp: float | None = None
    spo2: float | None = None
    temperature_c: float | None = None


class PatientFacts(BaseModel):
    """What the conversation says about the patient; None means not stated."""

    age_years: float | None = None
    age_stated: bool = False  # False when the age is only guessed from "baby" or "toddler"
    sex: str | None = None
    pregnant: bool | None = None
    duration_days: float | None = None
    vitals: VitalSigns = VitalSigns()


def _number(token: str) -> float:
    token = token.lower()
    if token in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[token])
    if all(ch in "一两二三四五六七八九十" for ch in token):
        # Chinese numerals up to 99: "十五" = 15, "二十" = 20.
        tens, _, units = token.partition("十")
        if "十" not in token:
            return float(_NUMBER_WORDS.get(token, 0))
        return float((_NUMBER_WORDS.get(tens, 1) if tens else 1) * 10 + _NUMBER_WORDS.get(units, 0))
    return float(token)


def _age(text: str) -> float | None:
    ages: list[float] = []
    for m in _AGE_EN.finditer(text):
        if m.group(1):
            per_year = {"year": 1, "yr": 1, "month": 12, "week": 52, "day": 365}
            ages.append(_number(m.group(1)) / per_year[m.group(2).lower()])
        elif m.group(3) or m.group(4):
            ages.append(float(m.group(3) or m.group(4)))
    for m in _AGE_ZH.finditer(text):
        value = float(m.group(1))
        ages.append(value if m.group(2) == "岁" else value / (12 if "月" in m.group(2) else 52))
    ages = [a for a in ages if 0 <= a <= 120]
    if ages:
        # The patient is usually the first person whose age is given.
        return ages[0]
    return None


def _age_guess(text: str) -> float | None:
    # "My baby": under one, age unknown. 0.4 years sits in NICE's 3-6 month band, so a
    # fever is at least urgent until the parent tells us the age (a follow-up question).
    if _INFANT.search(text):
        return 0.4
    if _TODDLER.search(text):
        return 2.0
    return None


def _duration(text: str) -> float | None:
    spans: list[float] = []
    for m in _DURATION_EN.finditer(text):
        before = text[max(0, m.start() - 25) : m.start()]
        after = text[m.end() : m.end() + 12]
        if re.match(r"[\s-]*old\b", after, re.IGNORECASE):
            continue  # "a 34-year-old": an age, not a duration
        # "a 3-day history", "for 3 days", "3 days ago": a count of time, not "3 days a week".
        if _DURATION_CUE.search(before) or _DURATION_CUE.search(after) or "-" in m.group(0):
            unit = m.group(2).lower().rstrip("s")
            spans.append(_number(m.group(1)) * _UNIT_DAYS[unit])
    for m in _DURATION_ZH.finditer(text):
        spans.append(_number(m.group(1)) * _UNIT_DAYS[m.group(2)])
    for m in _PAST_UNIT.finditer(text):
        many = (m.group(1) or m.group(3) or "").strip()
        count = 3.0 if many in ("few", "几") else 2.0 if many in ("couple of", "两") else 1.0
        unit = (m.group(2) or m.group(4)).lower()
        spans.append(count * _UNIT_DAYS[unit])
    if not spans and _YESTERDAY.search(text):
        spans.append(1.0)
    if not spans and _TODAY.search(text):
        spans.append(0.25)
    return max(spans) if spans else None


def _first_number(pattern: re.Pattern[str], text: str) -> float | None:
    for m in pattern.finditer(text):
        value = next((g for g in m.groups() if g), None)
        if value is not None:
            return float(value)
    return None


def _temperature(text: str) -> float | None:
    highest: float | None = None
    for m in _TEMP.finditer(text):
        raw, unit = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        value = float(raw)
        if (unit or "").lower() == "f" or 93 <= value <= 110:
            value = (value - 32) * 5 / 9
        if 33 <= value <= 44:
            highest = value if highest is None else max(highest, value)
    return highest


def _sex(text: str) -> str | None:
    female, male = len(_FEMALE.findall(text)), len(_MALE.findall(text))
    if female == male:
        return None
    return "female" if female > male else "male"


def _excerpt(text: str) -> str:
    # Patients state age, duration and readings near the start (or the end) of a message;
    # reading a bounded excerpt keeps a pasted 200,000-character text fast.
    if len(text) <= FACTS_HEAD + FACTS_TAIL:
        return text
    return f"{text[:FACTS_HEAD]}\n{text[-FACTS_TAIL:]}"


def extract_facts(texts: Iterable[str]) -> PatientFacts:
    """Read age, sex, pregnancy, duration and vital signs from the patient's messages."""
    text = "\n".join(_excerpt(t) for t in texts if t)
    pregnant: bool | None = None
    if _NOT_PREGNANT.search(text):
        pregnant = False
    elif _PREGNANT.search(text):
        pregnant = True
    age = _age(text)
    # Vital signs are numbers: most patient messages have none, so skip those patterns.
    numeric = _DIGIT.search(text) is not None
    return PatientFacts(
        age_years=age if age is not None else _age_guess(text),
        age_stated=age is not None,
        sex=_sex(text),
        pregnant=pregnant,
        duration_days=_duration(text),
        vitals=VitalSigns(
            heart_rate=_first_number(_HEART, text),
            resp_rate=_first_number(_RESP, text),
            systolic_bp=_first_number(_BP, text),
            spo2=_first_number(_SPO2, text),
            temperature_c=_temperature(text),
        )
        if numeric
        else VitalSigns(),
    )
