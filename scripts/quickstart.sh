#!/usr/bin/env bash
# Set up kannon in .venv and run the quick-start pipeline on the local backend (the README's first command).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
status=0
.venv/bin/kannon build examples/quickstart/pipeline.py:root --workspace ./resources/quickstart \
    --max-parallel 3 --events ./resources/quickstart/events.jsonl --report ./resources/quickstart/report.html "$@" \
    || status=$?
echo "kannon is installed in .venv; to use the kannon command in this shell: source .venv/bin/activate" >&2
exit "$status"
