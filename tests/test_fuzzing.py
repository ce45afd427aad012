"""Property-based fuzzing (hypothesis) of what outsiders feed CareBot: Telegram updates and
button data, doctors' commands, dashboard form fields, prompt drafts and guideline files.

Each property is what a patient, doctor or operator would notice if it broke: polling stuck
on one update, a doctor's button or message crashing the handler, a sign-in redirect to
another site, a draft that crashes the console, a file that crashes ingestion.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telegram import Update

from bot.channels.telegram.doctors import case_number, pick_case
from bot.channels.telegram.requests import _readable
from bot.dashboard.routes import _next
from bot.dashboard.two_factor import matching_step
from bot.models import utcnow
from bot.prompts import PromptLibrary
from rag.documents import LoadError, SourceDocument
from rag.loaders import SUPPORTED_SUFFIXES, parse

PROMPTS = Path(__file__).resolve().parent.parent / "prompts"
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
updates = st.fixed_dictionaries(
    {"update_id": st.integers() | st.text() | st.none() | st.floats(allow_nan=False)},
    optional={
        "message": json_values,
        "callback_query": json_values,
        "edited_message": json_values,
    },
)


@FUZZ
@given(st.one_of(updates, json_values))
def test_polling_never_sticks_on_an_update_it_cannot_read(raw: Any) -> None:
    # PTB re-asks for a batch it cannot parse forever: what reaches it must always parse.
    readable = _readable(json.loads(json.dumps(raw)))
    Update.de_json(readable, None)


@FUZZ
@given(st.text())
def test_button_data_gives_a_case_number_or_nothing(value: str) -> None:
    number = case_number(value)
    assert number is None or (value.isascii() and 0 < number < 2**63)


@FUZZ
@given(st.lists(st.integers(1, 10**6), max_size=3), st.text())
def test_any_doctor_message_names_at_most_one_case(held: list[int], text: str) -> None:
    case, passed_on = pick_case(held, text, None)
    assert case is None or 0 < case < 2**63
    assert isinstance(passed_on, str)


@FUZZ
@given(st.text())
def test_sign_in_never_sends_anyone_to_another_site(target: str) -> None:
    landing = _next(target)
    assert landing == "/dashboard" or landing.startswith("/dashboard/")
    assert "//" not in landing and "\\" not in landing and ":" not in landing


@FUZZ
@given(st.text(max_size=64))
def test_a_typed_code_is_six_digits_or_refused(code: str) -> None:
    step = matching_step("JBSWY3DPEHPK3PXP", code, utcnow())
    assert step is None or sum(ch.isdigit() for ch in code) == 6


LIBRARY = PromptLibrary(PROMPTS)
drafts = st.one_of(
    st.text(),
    st.builds(
        lambda name, body: f"---\nname: {name}\n---\n{body}",
        st.text(max_size=20),
        st.text(max_size=200),
    ),
    st.builds(  # a texts file with arbitrary languages, keys and placeholders
        lambda key, lang, body: f"{key}:\n  variables: []\n  {lang}: {json.dumps(body)}\n",
        st.text(min_size=1, max_size=10),
        st.sampled_from(["en", "zh", "fr", ""]),
        st.text(max_size=80),
    ),
)


@FUZZ
@given(st.sampled_from(sorted(LIBRARY.names())), drafts)
def test_any_draft_gets_a_list_of_problems_never_a_crash(name: str, raw: str) -> None:
    problems = LIBRARY.problems(name, raw)
    assert isinstance(problems, list) and all(isinstance(p, str) and p for p in problems)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SUPPORTED_SUFFIXES), st.binary(max_size=2048))
def test_any_guideline_file_loads_or_is_refused_with_a_reason(suffix: str, data: bytes) -> None:
    try:
        document = parse(Path(f"fuzzed{suffix}"), data)
    except LoadError as exc:
        assert str(exc)
    else:
        assert isinstance(document, SourceDocument)
