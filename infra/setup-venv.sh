#!/usr/bin/env bash
# Create .venv and install CareBot with the given extras, showing progress. The first run
# compiles llama-cpp-python (several minutes on 2 cores); pip caches the wheel, so later
# runs, and fresh clones on the same machine, take seconds.
#   usage: infra/setup-venv.sh [EXTRAS]     e.g. infra/setup-venv.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
spec="."
[ -n "$extras" ] && spec=".[$extras]"
python="${PYTHON:-python3}"
log=".venv/install.log"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "CareBot needs Python 3.11 or newer; $python is $("$python" --version 2>&1)." >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip wheel 2>&1 | grep -v "^WARNING: Location" || true

# PyTorch (for the embedding model): pin the CPU build where one is on hand; a plain
# "torch" from PyPI is a multi-GB CUDA build. Override with TORCH_SPEC if you need another.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "==> installing PyTorch (${TORCH_SPEC:-torch==2.13.0}) for the embedding model"
  .venv/bin/python -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}" 2>&1 \
    | grep -v "^WARNING: Location" || true
fi
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  echo "==> installing CareBot; the first time this compiles llama.cpp (about 8 minutes on 2 cores)"
fi
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"
# pip -v prints the compiler's "[n/total]" steps; show the newest as a progress line
# (rewritten in place on a terminal, one line per change in a log).
.venv/bin/python -m pip install -v -e "$spec" >"$log" 2>&1 </dev/null &
pid=$!
shown=""
while kill -0 "$pid" 2>/dev/null; do
  step=$(grep -oE '^\s*\[[0-9]+/[0-9]+\]' "$log" 2>/dev/null | tail -1 | tr -d ' ' || true)
  stage=$(grep -oE '^(Collecting|Building wheel for|Installing collected|Successfully) [^ ]+' \
          "$log" 2>/dev/null | tail -1 || true)
  line="${step:+compiling llama.cpp $step}"
  line="${line:-${stage:-resolving dependencies}}"
  if [ "$line" != "$shown" ]; then
    if [ -t 1 ]; then printf '\r   %-60s' "$line"; else echo "   $line"; fi
    shown="$line"
  fi
  sleep 2
done
if ! wait "$pid"; then
  echo
  echo "Installation failed; the last lines of $log:" >&2
  tail -30 "$log" >&2
  exit 1
fi
if [ -t 1 ]; then printf '\r   %-60s\n' "installed"; else echo "   installed"; fi
