"""A CareBot web app on loopback per test module, for the dashboard's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard.live import LiveServer, serving
from tests.fakes import scripted

SUMMARY = (
    '{"chief_complaint": "Crushing central chest pain with sweating for 20 minutes", '
    '"history": "Started at rest; no known heart disease mentioned.", '
    '"open_questions": ["Age and cardiac history", "Is someone with the patient?"]}'
)


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, guideline_index_dir: Path
) -> Iterator[LiveServer]:
    """The web app with the dashboard; the LLM writes every case the same summary."""
    with serving(
        tmp_path_factory.mktemp("dashboard"), guideline_index_dir, scripted(SUMMARY)
    ) as server:
        yield server
