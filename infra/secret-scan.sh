#!/usr/bin/env bash
# Fail when a file in the repository holds a secret-looking string (an AWS or PyPI key, a
# private key, a Telegram bot token, password="...", a high-entropy string: detect-secrets'
# plugins) that .secrets.baseline does not list as audited. Scans the tracked files and the
# untracked ones git does not ignore, so it also works before a commit.
#   make secrets                        (CI runs it first)
# A new test fixture that looks like a secret: add it to the baseline, then mark it
# "not a secret" (audit asks about each unaudited finding; answer n):
#   .venv/bin/detect-secrets scan --baseline .secrets.baseline
#   .venv/bin/detect-secrets audit .secrets.baseline
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
baseline=.secrets.baseline

files=()
while IFS= read -r -d '' f; do [ -f "$f" ] && files+=("$f"); done \
  < <(git ls-files -z --cached --others --exclude-standard)

# The hook matches findings by file, type and hash, not line, so a fixture that moved still
# matches; it then rewrites the baseline's line numbers and exits 3. It works on a copy, so
# a scan never edits the committed baseline (the copy's path is not scanned; the baseline's
# own hashes are excluded by a pattern it records).
copy=$(mktemp)
trap 'rm -f "$copy" "$copy.out"' EXIT
cp "$baseline" "$copy"
rc=0
"$bin/detect-secrets-hook" --baseline "$copy" "${files[@]}" >"$copy.out" 2>&1 || rc=$?
if [ "$rc" != 0 ] && [ "$rc" != 3 ]; then
  cat "$copy.out"
  echo "Secret scan FAILED: remove the secret (and rotate it if it was real), or, for a fake" >&2
  echo "fixture, add it to $baseline as audited (see infra/secret-scan.sh)." >&2
  exit 1
fi

# Only findings audited as not secrets may stand in the baseline.
"$bin/python" - "$baseline" <<'EOF'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
bad = [f"{name}:{r['line_number']} {r['type']}" for name, found in results.items()
       for r in found if r.get("is_secret") is not False]
if bad:
    sys.exit("Secret scan FAILED: not audited as false positives in the baseline:\n  "
             + "\n  ".join(bad) + "\n(.venv/bin/detect-secrets audit " + sys.argv[1] + ")")
print(f"secret scan: {sum(map(len, results.values()))} known false positives, nothing new")
EOF
