#!/usr/bin/env bash
# One more supported Python for scripts/test.sh: `bash .ci/test-python.sh 3.12 [pytest args]`.
#
# Finds a CPython 3.X (KANNON_PYTHON_3_X, else python3.X on PATH, else the newest ~/.pyenv/versions/3.X.*), makes
# its own venv .venv-py3.X with kannon[test] and the example plugin (.ci/venv.sh: by uv when UV names it or uv is
# on PATH, else pip), and runs the tiers every supported Python must
# pass: tests/unit, the local-backend end-to-end tests (tests/e2e/test_local*.py) and the Kubernetes-emulator tier
# (tests/e2e/k8s); Docker and browser tests run on the main Python only (the test image bind-mounts that one venv).
# Extra arguments replace those paths (e.g. `bash .ci/test-python.sh 3.13 tests/unit`). KANNON_K8S_CLIENT (e.g.
# 'kubernetes>=35,<36') installs that client instead of the newest one kannon allows.
#
# No such interpreter: exit 3 with the reason under CI=true (a CI machine that lost one cannot pass by skipping),
# else a notice and exit 0.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${1:?usage: .ci/test-python.sh 3.X [pytest args]}
shift
export PIP_DISABLE_PIP_VERSION_CHECK=1

version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }

find_python() {
    local var="KANNON_PYTHON_${VERSION/./_}" candidate
    if [ -n "${!var:-}" ]; then
        [ "$(version_of "${!var}")" = "$VERSION" ] && { echo "${!var}"; return 0; }
        echo "$var=${!var} is not a Python $VERSION" >&2
        return 1
    fi
    # PATH first; pyenv shims answer for versions that are not active, so each candidate is asked its version.
    for candidate in "$(command -v "python$VERSION" || true)" \
        $(ls -d "$HOME"/.pyenv/versions/"$VERSION".*/bin/python 2>/dev/null | sort -V -r); do
        if [ -n "$candidate" ] && [ "$(version_of "$candidate")" = "$VERSION" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if ! PY=$(find_python); then
    msg="no Python $VERSION found (set KANNON_PYTHON_${VERSION/./_}, put python$VERSION on PATH, or pyenv install $VERSION)"
    if [ "${CI:-}" = true ]; then
        echo "test-python: $msg — and CI=true, so this is a failure" >&2
        exit 3
    fi
    echo "test-python: $msg; skipped" >&2
    exit 0
fi

VENV=$PWD/.venv-py$VERSION
if [ -x "$VENV/bin/python" ] && [ "$(version_of "$VENV/bin/python")" != "$VERSION" ]; then
    rm -rf "$VENV"  # made by another interpreter (e.g. a moved pyenv version)
fi
start=$(date +%s)
. .ci/venv.sh
# KANNON_K8S_CLIENT: another requirement for the kubernetes client (.ci/matrix.sh gives the oldest Python 35.x).
make_test_venv "$PY" "$VENV" ${KANNON_K8S_CLIENT:+"$KANNON_K8S_CLIENT"}
if [ -n "${KANNON_K8S_CLIENT:-}" ]; then
    "$VENV/bin/python" - "$KANNON_K8S_CLIENT" <<'PY'
import sys
from importlib.metadata import version
from packaging.requirements import Requirement
req, have = Requirement(sys.argv[1]), version("kubernetes")
print("test-python: kubernetes", have)
assert req.specifier.contains(have), f"kubernetes {have} installed, {req} asked"
PY
fi
installed=$(date +%s)
echo "test-python: $("$VENV/bin/python" -V) in $VENV (from $PY), installed in $((installed - start)) s${UV:+ by uv}"

if [ $# -eq 0 ]; then
    set -- -m "not docker and not browser" tests/unit tests/e2e/test_local*.py tests/e2e/k8s
fi
set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider -ra "$@"
rc=$?
set -e
echo "test-python: Python $VERSION tests took $(($(date +%s) - installed)) s (exit $rc)"
if [ "$rc" = 5 ]; then echo "test-python: pytest collected no tests on Python $VERSION: that is a failure"; exit 1; fi
exit "$rc"
