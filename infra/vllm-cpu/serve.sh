#!/usr/bin/env bash
# Serve the embedded SmolLM2 model through vLLM on a CPU, OpenAI-compatible, for tests and
# laptops. Runs setup.sh first (idempotent). Point CareBot at it with
#   CAREBOT_LLM_BACKEND=openai CAREBOT_LLM_BASE_URL=http://127.0.0.1:${PORT}/v1
#
#   HOST (127.0.0.1)  PORT (8001)  VLLM_VENV, VLLM_MODEL: as in setup.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
base="${XDG_CACHE_HOME:-$HOME/.cache}/carebot/vllm-cpu"
venv="${VLLM_VENV:-$base/venv}"
model="${VLLM_MODEL:-$base/smollm2}"
"$here/setup.sh" >&2

# 1 GiB of KV cache is plenty for a 135M model with a 2k context; vLLM's default takes 4 GiB.
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
# The `vllm` console script looks up a distribution named "vllm"; this one is "vllm-cpu".
exec "$venv/bin/python" -m vllm.entrypoints.openai.api_server \
  --model "$model" --served-model-name smollm2 \
  --host "${HOST:-127.0.0.1}" --port "${PORT:-8001}" \
  --max-model-len 2048 --dtype bfloat16 "$@"
