#!/usr/bin/env bash
# The upstream tier: build (or reuse the machine's cache of) etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler from source, then run tests/e2e/upstream against them (the session fixtures start and stop the
# control plane and kannon's node, `python -m kannon.testing.node`, which runs the pods bound to it as warm process
# pods; test_node_docker.py also needs the Docker engine and KANNON_TEST_IMAGE, see .ci/docker-setup.sh). A missing
# Go toolchain or a failed build fails this script with the build's message.
#
# Environment: VENV (the test virtualenv, default ./.venv), KANNON_UPSTREAM_CACHE (default ~/.cache/kannon/upstream),
# KANNON_UPSTREAM_KUBERNETES / KANNON_UPSTREAM_ETCD (other releases; docs/upstream.md). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-$PWD/.venv}"

echo "upstream: building or reusing the cached control plane"
start=$(date +%s)
if ! "$VENV/bin/python" -m kannon.testing.upstream build; then
    echo "upstream: the Kubernetes control plane could not be built (see the message above; docs/upstream.md)" >&2
    exit 1
fi
echo "upstream: programs ready after $(( $(date +%s) - start )) s"

set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider -ra -m upstream tests/e2e/upstream "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then echo "upstream: pytest collected no tests: that is a failure" >&2; exit 1; fi
exit "$rc"
