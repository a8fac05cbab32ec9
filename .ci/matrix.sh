#!/usr/bin/env bash
# The rest of the Python matrix for scripts/test.sh, which runs this in the background beside the main suite:
#
#   bash .ci/matrix.sh RESULTS 3.10 3.12 3.13
#
# One Python after another (.ci/test-python.sh, each in its own .venv-py3.X); a line "VERSION EXIT SECONDS WHAT"
# is appended to RESULTS as each ends. Every supported Python runs tests/unit (which imports every kannon module on
# it) and the local-backend e2e tests, where the interpreter matters most (the child entrypoint, fork and spawn,
# signals, resource limits). The Kubernetes-emulator tier runs on the main Python (in the main suite, client 36.x)
# and on the first Python given here with the other client major kannon supports (35.x): the client's major is
# what changes that tier's code paths. A third or fourth run of it cost ~7 min each of a budget of 75 (issue 19);
# the last Python given runs its end-to-end builds (tests/e2e/k8s/test_k8s_backend_build.py: quick-start, SIGKILL
# and re-attach, duplicate master, S3 workspace; ~1 min) as a smoke test of the client and TLS on it.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${1:?usage: .ci/matrix.sh RESULTS 3.X...}
shift
last=$#
i=0
for version in "$@"; do
    i=$((i + 1))
    start=$(date +%s)
    if [ "$i" = 1 ]; then
        what="install + unit, local e2e, Kubernetes emulator (client 35.x)"
        printf '\n== Python %s: %s (.venv-py%s)\n' "$version" "$what" "$version"
        KANNON_K8S_CLIENT='kubernetes>=35,<36' bash .ci/test-python.sh "$version"
    else
        smoke=()
        what="install + unit, local e2e"
        if [ "$i" = "$last" ]; then
            smoke=(tests/e2e/k8s/test_k8s_backend_build.py)
            what="$what, Kubernetes builds smoke"
        fi
        printf '\n== Python %s: %s (.venv-py%s)\n' "$version" "$what" "$version"
        bash .ci/test-python.sh "$version" -m "not docker and not browser" tests/unit tests/e2e/test_local*.py \
            "${smoke[@]}"
    fi
    rc=$?
    echo "$version $rc $(($(date +%s) - start)) $what" >>"$RESULTS"
done
