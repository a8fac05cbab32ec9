#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run all of it. This is the README's test command
# and exactly what CI (.ci/run) runs. Extra arguments go to pytest (e.g. `bash scripts/test.sh -k local`).
#
#   1. a virtualenv in .venv with kannon[test] and the example third-party plugin (tests/plugin_example)
#   2. services: a Docker engine and the local test image (.ci/docker-setup.sh; root), headless Chromium
#   3. ruff + mypy --strict
#   4. pytest (unit, e2e, faults), then the Kubernetes tier again with the other supported client major (35.x)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
VENV=${KANNON_VENV:-$ROOT/.venv}
export PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n== %s\n' "$*"; }

step "python environment ($VENV)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[test]" -e tests/plugin_example

step "services"
if [ "$(id -u)" = 0 ] && ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
if ! VENV="$VENV" bash .ci/docker-setup.sh; then
    if [ "${CI:-}" = true ]; then echo "the Docker engine could not be started (CI=true)"; exit 1; fi
    echo "no Docker engine: the docker tests will be skipped (they fail instead under CI=true)"
fi

step "lint and types"
"$VENV/bin/ruff" check kannon tests bench examples
"$VENV/bin/mypy"

step "tests"
set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider -ra "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then echo "pytest collected no tests: that is a failure"; exit 1; fi
[ "$rc" = 0 ] || exit "$rc"

if [ $# -eq 0 ]; then
    step "Kubernetes tier with kubernetes client 35.x"
    K35="$ROOT/.venv-k35"
    [ -x "$K35/bin/python" ] || "$PYTHON" -m venv "$K35"
    "$K35/bin/python" -m pip install -q --upgrade pip
    "$K35/bin/python" -m pip install -q -e ".[test]" 'kubernetes>=35,<36'
    "$K35/bin/python" -c 'import kubernetes; v = kubernetes.__version__; print("kubernetes", v); assert v.startswith("35.")'
    set +e
    "$K35/bin/python" -m pytest -p no:cacheprovider -ra -m k8s tests/e2e/k8s
    rc=$?
    set -e
    if [ "$rc" = 5 ]; then echo "no Kubernetes tests ran under client 35.x: that is a failure"; exit 1; fi
    exit "$rc"
fi
