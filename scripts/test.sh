#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run all of it. This is the README's test command
# and exactly what CI (.ci/run) runs. Extra arguments go to pytest on the main Python instead of steps 3-5: no
# other Python, and the upstream control plane is built first, in the foreground (`bash scripts/test.sh -k local`).
#
#   1. a virtualenv .venv-test (KANNON_VENV) with kannon[test] and the example third-party plugin
#      (tests/plugin_example) — its own venv, so the plugin's "example" backend and --example-tag never show up in
#      the .venv you run kannon from; installed by uv (.ci/venv.sh; pip when uv cannot be had)
#   2. services: a Docker engine and the local test image (.ci/docker-setup.sh; root), headless Chromium
#   3. ruff + mypy --strict; then two background jobs beside the tests, each in its own session and log:
#      - the upstream Kubernetes control plane (kannon.testing.upstream build: compiled from source once per
#        machine, 13-16 min cold on 2 cores, then reused from ~/.cache/kannon/upstream) for tests/e2e/upstream, at
#        nice 19 so that it soaks up the CPU the tests leave idle; log .upstream-build.log
#      - every other supported Python (KANNON_PYTHONS, default 3.10 3.11 3.12 3.13 less the main one), one after
#        another, each in its own .venv-py3.X (.ci/test-python.sh; a missing interpreter fails under CI=true):
#        tests/unit and the local-backend e2e tests on each, the Kubernetes-emulator tier on the oldest too (with
#        the other supported client major, 35.x); log .ci-matrix.log, printed after step 4. The tests mostly wait
#        on processes, pods and containers, so two suites side by side take little more than one (issue 19)
#   4. pytest, the whole suite (unit, e2e, faults) but the upstream tier on the main Python (PYTHON, default python3)
#   5. waits for the other Pythons, then runs the upstream tier (tests/e2e/upstream) on the main Python once the
#      build is done; a failed build fails here with its log
# It ends with the time each part took.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
VENV=${KANNON_VENV:-$ROOT/.venv-test}
SUPPORTED="3.10 3.11 3.12 3.13"
export PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n== %s\n' "$*"; }
TIMES=()
mark=$(date +%s)
took() {  # took LABEL: record the seconds since the previous mark
    local now
    now=$(date +%s)
    TIMES+=("$(printf '%5d s  %s' $((now - mark)) "$1")")
    mark=$now
}
summary() {
    step "time taken"
    printf '%s\n' "${TIMES[@]}"
}
trap summary EXIT

MAIN=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case " $SUPPORTED " in
    *" $MAIN "*) ;;
    *) echo "PYTHON=$PYTHON is Python $MAIN; kannon supports $SUPPORTED"; exit 1 ;;
esac

step "python environment ($VENV, Python $MAIN)"
. .ci/venv.sh
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
UV=${UV-$(uv_for "$VENV")}
export UV
make_test_venv "$PYTHON" "$VENV"
took "main venv: install (Python $MAIN${UV:+, uv})"

step "services"
if [ "$(id -u)" = 0 ] && ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
if ! VENV="$VENV" bash .ci/docker-setup.sh; then
    if [ "${CI:-}" = true ]; then echo "the Docker engine could not be started (CI=true)"; exit 1; fi
    echo "no Docker engine: the docker tests will be skipped (they fail instead under CI=true)"
fi
took "services (Docker engine, test image, Chromium)"

step "lint and types"
"$VENV/bin/ruff" check kannon tests bench examples
"$VENV/bin/mypy"
took "ruff + mypy"

if [ $# -gt 0 ]; then
    step "upstream Kubernetes control plane (built from source once per machine, then reused from its cache)"
    "$VENV/bin/python" -m kannon.testing.upstream build
    step "tests (Python $MAIN: $*)"
    set +e
    "$VENV/bin/python" -m pytest -p no:cacheprovider -ra "$@"
    rc=$?
    set -e
    took "Python $MAIN: pytest $*"
    if [ "$rc" = 5 ]; then echo "pytest collected no tests: that is a failure"; exit 1; fi
    exit "$rc"
fi

# Background jobs, each in its own session so that one signal stops all it started (go and its compilers, pytest
# and its children); a run that ends early, failed or interrupted, stops them.
BG_PIDS=()
stop_background() {
    local pid
    for pid in "${BG_PIDS[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
    BG_PIDS=()
}
trap 'stop_background; summary' EXIT

step "upstream Kubernetes control plane: building (or reusing its cache) in the background, log .upstream-build.log"
BUILD_LOG=$ROOT/.upstream-build.log
rm -f "$BUILD_LOG.rc"
setsid bash -c 'start=$(date +%s); nice -n 19 "$1" -m kannon.testing.upstream build >"$2" 2>&1
                echo "$? $(( $(date +%s) - start ))" >"$2.rc"' build "$VENV/bin/python" "$BUILD_LOG" &
BG_PIDS+=($!)

OTHERS=()
for version in ${KANNON_PYTHONS:-$SUPPORTED}; do
    [ "$version" = "$MAIN" ] || OTHERS+=("$version")
done
MATRIX_LOG=$ROOT/.ci-matrix.log
: >"$MATRIX_LOG.rc"  # one line per Python as each ends: an empty file says none did
if [ ${#OTHERS[@]} -gt 0 ]; then
    step "Python ${OTHERS[*]}: in the background, one after another (.ci/matrix.sh), log .ci-matrix.log"
    setsid bash .ci/matrix.sh "$MATRIX_LOG.rc" "${OTHERS[@]}" >"$MATRIX_LOG" 2>&1 &
    BG_PIDS+=($!)
fi

step "tests (Python $MAIN, the whole suite but the upstream tier)"
set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider -ra --durations=25 --ignore=tests/e2e/upstream
rc=$?
set -e
took "Python $MAIN: whole suite but the upstream tier"
if [ "$rc" = 5 ]; then echo "pytest collected no tests: that is a failure"; exit 1; fi
[ "$rc" = 0 ] || exit "$rc"

if [ ${#OTHERS[@]} -gt 0 ]; then
    step "Python ${OTHERS[*]}: waiting for them (log .ci-matrix.log, below)"
    wait "${BG_PIDS[1]}" || true
    cat "$MATRIX_LOG"
    took "waiting for Python ${OTHERS[*]} (ran beside the main suite)"
    failed=()
    while read -r version vrc seconds what; do
        TIMES+=("$(printf '%5d s  (beside) Python %s: %s' "$seconds" "$version" "$what")")
        [ "$vrc" = 0 ] || failed+=("$version")
    done <"$MATRIX_LOG.rc"
    ran=$(wc -l <"$MATRIX_LOG.rc")
    if [ "$ran" != ${#OTHERS[@]} ]; then echo "the other Pythons did not all run (${ran} of ${#OTHERS[@]})"; exit 1; fi
    if [ ${#failed[@]} -gt 0 ]; then echo "failed on Python ${failed[*]} (log above)"; exit 1; fi
fi

step "upstream Kubernetes control plane: waiting for the background build"
wait "${BG_PIDS[0]}" || true
read -r build_rc build_wall <"$BUILD_LOG.rc" || { build_rc=1; build_wall=?; }
cat "$BUILD_LOG"
took "waiting for the upstream build (its own wall: ${build_wall} s at nice 19, beside the tests)"
if [ "$build_rc" != 0 ]; then
    echo "the upstream Kubernetes control plane could not be built (exit $build_rc; the log is above; docs/upstream.md)"
    exit 1
fi

step "upstream tier (Python $MAIN, tests/e2e/upstream)"
set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider -ra tests/e2e/upstream
rc=$?
set -e
took "Python $MAIN: upstream tier"
if [ "$rc" = 5 ]; then echo "pytest collected no upstream tests: that is a failure"; exit 1; fi
[ "$rc" = 0 ] || exit "$rc"
