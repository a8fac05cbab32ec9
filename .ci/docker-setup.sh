#!/usr/bin/env bash
# Make a Docker engine answer and build the local test image `kannon-test:latest` for tests/e2e/docker.
#
# Idempotent and quick when already done: installs Debian's docker.io only if no `dockerd` exists, starts
# `dockerd --iptables=false --bridge=none` (root, background) only if no engine answers, and rebuilds the image
# only when its fingerprint (interpreter, venv path, shared-library set) changed.
#
# The image is a minimal root filesystem: the host's shared libraries that the Python environment needs (found
# with ldd) plus /etc/passwd, /etc/group and /tmp. The interpreter itself is NOT in the image: tests bind-mount the
# venv and its base interpreter read-only at the same paths (DockerExecutor(volumes=[...])). No registry is needed.
#
# Environment: VENV (default /work/venv, else the active venv), KANNON_TEST_IMAGE (default kannon-test:latest),
# DOCKERD_LOG (default /tmp/kannon-dockerd.log), DOCKER_HOST (respected: if it answers it is used as is).
set -euo pipefail

VENV="${VENV:-${VIRTUAL_ENV:-/work/venv}}"
IMAGE="${KANNON_TEST_IMAGE:-kannon-test:latest}"
DOCKERD_LOG="${DOCKERD_LOG:-/tmp/kannon-dockerd.log}"

log() { echo "docker-setup: $*" >&2; }

engine_answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# --- 1. the engine ---------------------------------------------------------------------------------------------
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    log "installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io >/dev/null
fi

if ! engine_answers; then
    if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix:///var/run/docker.sock" ]; then
        log "DOCKER_HOST=${DOCKER_HOST} does not answer; unset it to use a local dockerd"
        exit 1
    fi
    if [ "$(id -u)" != 0 ]; then
        log "no Docker engine answers and starting dockerd needs root"
        exit 1
    fi
    log "starting dockerd (log: ${DOCKERD_LOG})"
    # No iptables/bridge: the test containers need no network, and CI machines often lack netfilter modules.
    # setsid: the daemon must outlive this script (and the CI step that ran it).
    setsid nohup dockerd --iptables=false --bridge=none >"${DOCKERD_LOG}" 2>&1 < /dev/null &
    for _ in $(seq 1 120); do
        engine_answers && break
        sleep 0.5
    done
    if ! engine_answers; then
        log "dockerd did not answer within 60s; last lines of ${DOCKERD_LOG}:"
        tail -n 30 "${DOCKERD_LOG}" >&2 || true
        exit 1
    fi
fi
log "engine $(docker version --format '{{.Server.Version}}') answers"

# --- 2. the test image -----------------------------------------------------------------------------------------
PY="${VENV}/bin/python"
if [ ! -x "${PY}" ]; then
    log "no Python at ${PY}; set VENV to the virtualenv the tests run in"
    exit 1
fi
BASE_PREFIX="$("${PY}" -c 'import sys; print(sys.base_prefix)')"
BASE_EXE="$(readlink -f "${PY}")"
PYVER="$("${PY}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# Shared objects whose dependencies the image must satisfy: the interpreter, its stdlib extensions and the venv.
list_objects() {
    {
        echo "${BASE_EXE}"
        find "${BASE_PREFIX}/lib" -maxdepth 1 -name 'libpython*.so*' -type f
        find "${BASE_PREFIX}/lib/python${PYVER}/lib-dynload" -name '*.so' -type f
        find "${VENV}/lib" -name '*.so*' -type f
    } | sort
}

FINGERPRINT="$({ echo "v2 ${VENV} ${BASE_EXE} ${PYVER}"; list_objects; ldd --version | awk 'NR == 1'; } | sha256sum | cut -c1-16)"
CURRENT="$(docker image inspect --format '{{index .Config.Labels "io.kannon.test.fingerprint"}}' "${IMAGE}" 2>/dev/null || true)"
if [ "${CURRENT}" = "${FINGERPRINT}" ]; then
    log "image ${IMAGE} is up to date (${FINGERPRINT})"
    exit 0
fi

log "building ${IMAGE} (${FINGERPRINT})"
ROOTFS="$(mktemp -d /tmp/kannon-rootfs.XXXXXX)"
trap 'rm -rf "${ROOTFS}"' EXIT

# Host libraries only: anything under the venv or the base prefix arrives through the read-only bind mounts.
# ldd of many files at once; a file ldd cannot read (not a dynamic object) is skipped.
LIBS="$({ list_objects | tr '\n' '\0' | xargs -0 ldd 2>/dev/null || true; } \
    | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' \
    | grep -v -e "^${VENV}/" -e "^${BASE_PREFIX}/" | sort -u)"
# glibc dlopen()s libgcc_s for thread cancellation and unwinding; ldd does not list it.
GCC_S="$(ldconfig -p | awk '/libgcc_s\.so\.1 .*x86-64/ && !found {print $NF; found = 1}')"
LIBS="${LIBS}
${GCC_S}"

for lib in ${LIBS}; do
    [ -n "${lib}" ] || continue
    # Keep the path as the loader resolved it and also the real file behind symlinks.
    mkdir -p "${ROOTFS}$(dirname "${lib}")"
    cp -L "${lib}" "${ROOTFS}${lib}"
done
# Debian's merged /usr: /lib -> usr/lib, /lib64 -> usr/lib64 on the host; the copies above sit in /lib{,64}.
mkdir -p "${ROOTFS}/etc" "${ROOTFS}/tmp"
chmod 1777 "${ROOTFS}/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' \
    >"${ROOTFS}/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"${ROOTFS}/etc/group"

tar -C "${ROOTFS}" -c . | docker import \
    --change "ENV PATH=${VENV}/bin:/usr/local/bin:/usr/bin:/bin" \
    --change "LABEL io.kannon.test.fingerprint=${FINGERPRINT}" \
    --change "LABEL io.kannon.test.venv=${VENV}" \
    - "${IMAGE}" >/dev/null
log "built ${IMAGE}: $(echo "${LIBS}" | grep -c . ) host libraries; mount ${VENV} and ${BASE_PREFIX} read-only"
# The previous build, now untagged, is of no further use.
docker image prune -f --filter "label=io.kannon.test.fingerprint" >/dev/null || true
