"""The model as the child process runs it: SmolLM2 (any llama-style GGUF) on PyTorch's CPU build.

PyTorch picks its CPU kernels at run time from what the processor and the OS support
(`torch.backends.cpu.get_cpu_capability()`), so one wheel runs on an AMD CPU without AVX-512
and on an Intel CPU with AMX alike: nothing here is compiled for the machine it was built on.
The GGUF is de-quantised by transformers once and kept as a Hugging Face folder in the cache
(keyed by the file's SHA-256); answers are written by a plain token loop so that a cancel is
seen between any two tokens and a JSON schema can be enforced on every one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bot.llm.worker.protocol import ChatTurn, Generate, Start
from bot.model_checksums import file_sha256

logger = logging.getLogger(__name__)
SELF_TEST = [ChatTurn(role="user", content="Say hello.")]
_MARKER = "carebot-source.json"


class PromptTooLong(Exception):
    """The prompt and the answer's room do not fit the context window."""


def converted_folder(gguf: Path, cache_dir: Path) -> Path:
    """Return the Hugging Face folder de-quantised from `gguf`, converting it the first time
    (about 25 s for SmolLM2 on 2 cores; later starts load the folder in well under one)."""
    digest = file_sha256(gguf)
    folder = cache_dir / f"{gguf.stem}-{digest[:16]}"
    if _intact(folder, digest):
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The de-quantised weights are plain tensors: drop the GGUF quantiser (which refuses to
    # save) and its config.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # Written beside the final folder and renamed into place: a crash mid-way (this is the
    # process that may crash) leaves no half folder that a later start would trust.
    partial = Path(tempfile.mkdtemp(prefix=".converting-", dir=cache_dir))
    try:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        files = {f.name: file_sha256(f) for f in sorted(partial.iterdir()) if f.is_file()}
        record = {"gguf": gguf.name, "sha256": digest, "files": files}
        (partial / _MARKER).write_text(json.dumps(record, indent=1))
        # Another CareBot on this machine may have finished the same conversion meanwhile,
        # and be loading it: an intact folder is never replaced.
        if not _intact(folder, digest):
            shutil.rmtree(folder, ignore_errors=True)
            try:
                os.rename(partial, folder)
            except OSError:
                if not _intact(folder, digest):
                    raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    logger.info("converted %s in %.1f s", gguf.name, time.monotonic() - started)
    return folder


def _intact(folder: Path, digest: str) -> bool:
    """Whether `folder` was converted from the GGUF with `digest` and no file changed since:
    the checksum chain from the lock's hash to the weights in use stays unbroken (a cache
    in a home folder is easier to tamper with than site-packages)."""
    try:
        record = json.loads((folder / _MARKER).read_text())
        files: dict[str, str] = record["files"]
        return record["sha256"] == digest and all(
            file_sha256(folder / name) == sha for name, sha in files.items()
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


class LocalModel:
    """A causal LM and its tokenizer, writing one answer at a time."""

    def __init__(self, start: Start) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        started = time.monotonic()
        torch.set_num_threads(start.threads)
        gguf = Path(start.gguf)
        try:
            folder = converted_folder(gguf, Path(start.cache_dir))
            source: dict[str, Any] = {"pretrained_model_name_or_path": folder}
        except OSError as exc:  # a read-only or full cache: convert in memory, every start
            logger.warning("model cache unusable (%s); converting in memory", type(exc).__name__)
            source = {"pretrained_model_name_or_path": gguf.parent, "gguf_file": gguf.name}
        self.tokenizer: Any = AutoTokenizer.from_pretrained(**source)
        model: Any = AutoModelForCausalLM.from_pretrained(**source, dtype=torch.float32)
        model.eval()
        self.precision = start.precision
        if start.precision == "int8":
            if not _int8_available(torch):
                raise RuntimeError("CAREBOT_LLM_PRECISION=int8: this PyTorch cannot quantise")
            model = _quantize_int8(torch, model)
        self.model: Any = model
        self.context = start.context
        self.cpu_capability = str(torch.backends.cpu.get_cpu_capability())
        eos = self.model.generation_config.eos_token_id
        ids = eos if isinstance(eos, list) else [eos]
        self.stop_ids = {int(i) for i in [*ids, self.tokenizer.eos_token_id] if i is not None}
        self._json_tokens: Any = None
        self.load_s = time.monotonic() - started

    def self_test(self) -> float:
        """Write a few tokens greedily; return tokens per second (raises if the model can't)."""
        started = time.monotonic()
        count = sum(
            1
            for _ in self.tokens(
                Generate(id=0, messages=SELF_TEST, max_tokens=8, temperature=0.0), lambda: False
            )
        )
        if count == 0:
            raise RuntimeError("the self-test wrote no token")
        return count / max(time.monotonic() - started, 1e-6)

    def tokens(self, request: Generate, cancelled: Callable[[], bool]) -> Iterator[str]:
        """Yield the answer's text piece by piece until a stop token, the cap or a cancel."""
        import torch

        prompt = self.tokenizer.apply_chat_template(
            [m.model_dump() for m in request.messages],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )["input_ids"]
        if prompt.shape[1] + request.max_tokens > self.context:
            raise PromptTooLong(f"{prompt.shape[1]} + {request.max_tokens} > {self.context}")
        enforcer = self._enforcer(request.json_schema) if request.json_schema else None
        prompt_ids: list[int] = prompt[0].tolist()
        generated: list[int] = []
        shown = ""
        cache: Any = None
        step_input = prompt
        with torch.inference_mode():
            for _ in range(request.max_tokens):
                out = self.model(input_ids=step_input, cache=cache, use_cache=True)
                cache = out.past_key_values
                logits = out.logits[0, -1].float()
                if enforcer is not None:
                    allowed = enforcer.get_allowed_tokens(prompt_ids + generated)
                    mask = torch.full_like(logits, float("-inf"))
                    mask[list(allowed.allowed_tokens)] = 0.0
                    logits = logits + mask
                chosen = _pick(torch, logits, request.temperature)
                if chosen in self.stop_ids:
                    break
                generated.append(chosen)
                text = self.tokenizer.decode(generated, skip_special_tokens=True)
                # Hold back a character cut in half between two tokens (shown as U+FFFD).
                ready = text.rstrip("\ufffd")
                if len(ready) > len(shown) and ready.startswith(shown):
                    yield ready[len(shown) :]
                    shown = ready
                if cancelled():
                    return
                step_input = torch.tensor([[chosen]])
        # The token budget can end inside a character: its first half is dropped, not shown.
        text = self.tokenizer.decode(generated, skip_special_tokens=True).rstrip("\ufffd")
        if len(text) > len(shown) and text.startswith(shown):
            yield text[len(shown) :]

    def _enforcer(self, schema: dict[str, Any]) -> Any:
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer, TokenEnforcerTokenizerData

        if self._json_tokens is None:  # built once per process (about a second)
            tok = self.tokenizer
            zero = tok.encode("0")[-1]
            special = set(tok.all_special_ids)
            regular = []
            for i in range(len(tok)):
                if i in special:
                    continue
                # Decoded after "0" to see whether the token starts a word (a leading space).
                after_zero = tok.decode([zero, i])[1:]
                regular.append((i, after_zero, len(after_zero) > len(tok.decode([i]))))
            self._json_tokens = TokenEnforcerTokenizerData(
                regular,
                lambda ids: tok.decode(ids).rstrip("\ufffd"),
                sorted(self.stop_ids),
                False,
                len(tok),
            )
        return TokenEnforcer(self._json_tokens, JsonSchemaParser(schema))


# Sampling as llama.cpp's defaults do it (the embedded model's answers were tuned and measured
# with them): the 40 likeliest tokens, then the smallest set holding 95% of the probability,
# then nothing below 5% of the likeliest. A 135M model sampled from its whole vocabulary
# wanders off its passages.
TOP_K, TOP_P, MIN_P = 40, 0.95, 0.05


def _pick(torch: Any, logits: Any, temperature: float) -> int:
    if temperature <= 0.0:
        return int(torch.argmax(logits))
    top, ids = torch.topk(logits, min(TOP_K, logits.shape[-1]))
    probs = torch.softmax(top / temperature, dim=-1)  # sorted, likeliest first
    keep = (torch.cumsum(probs, dim=-1) - probs) < TOP_P
    keep &= probs >= MIN_P * probs[0]
    keep[0] = True
    probs = probs * keep
    return int(ids[torch.multinomial(probs / probs.sum(), 1)])


def _int8_available(torch: Any) -> bool:
    engines = torch.backends.quantized.supported_engines
    quantization = getattr(torch, "ao", None) and getattr(torch.ao, "quantization", None)
    return bool(quantization and hasattr(quantization, "quantize_dynamic")) and any(
        e in engines for e in ("x86", "fbgemm")
    )


def _quantize_int8(torch: Any, model: Any) -> Any:
    """Dynamic int8 for the linear layers: a quarter of the weights to read per token, which
    is what bounds a small model's speed on a CPU (fp32 ~17 tokens/s, int8 ~50 on 2 cores).
    Not the default: with its activations quantised too, SmolLM2-135M loses the thread of its
    passages (bench.answer_path: 13 of 100 answers grounded, against 25 in fp32)."""
    engines = torch.backends.quantized.supported_engines
    torch.backends.quantized.engine = "x86" if "x86" in engines else "fbgemm"
    with warnings.catch_warnings():  # the API's deprecation notice; the pinned wheel has it
        warnings.simplefilter("ignore")
        quantization = torch.ao.quantization
        return quantization.quantize_dynamic(
            model, {torch.nn.Linear: quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8
        )
