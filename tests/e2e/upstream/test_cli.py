"""``python -m kannon.testing.upstream up|env|status|down`` as a user runs it, and the go.mod it builds with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kannon.testing.upstream.build import kubernetes, own_go_mod

pytestmark = pytest.mark.upstream

CLI = [sys.executable, "-m", "kannon.testing.upstream"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_up_env_down_stops_what_it_started_and_nothing_else(upstream: Any, tmp_path: Path) -> None:
    state = tmp_path / "cp"
    up = run("up", "--state-dir", str(state))
    assert up.returncode == 0, up.stderr
    assert up.stdout == f"KUBECONFIG={state / 'admin.kubeconfig'}\n"
    assert run("env", "--state-dir", str(state)).stdout == up.stdout
    again = run("up", "--state-dir", str(state))  # already up: same answer, nothing started twice
    assert again.stdout == up.stdout and "already up" in again.stderr

    env = {**os.environ, "KUBECONFIG": str(state / "admin.kubeconfig")}
    nodes = subprocess.run(["kubectl", "get", "namespaces", "-o", "name"], env=env, capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert "namespace/kube-system" in nodes.stdout.split()
    status = json.loads(run("status", "--state-dir", str(state)).stdout)
    assert status["running"] is True
    assert [p["name"] for p in status["processes"]] == ["etcd", "kube-apiserver", "kube-controller-manager",
                                                        "kube-scheduler"]  # fmt: skip
    pids = [p["pid"] for p in status["processes"]]

    # A process whose pid is recorded but whose start time is not ours (a reused pid) must survive `down`.
    decoy = subprocess.Popen(["sleep", "600"])
    recorded = json.loads((state / "state.json").read_text())
    recorded["processes"].insert(0, {"name": "decoy", "pid": decoy.pid, "start_time": 1})
    (state / "state.json").write_text(json.dumps(recorded))
    try:
        down = run("down", "--state-dir", str(state))
        assert down.returncode == 0, down.stderr
        assert [pid for pid in pids if alive(pid)] == []
        assert decoy.poll() is None
    finally:
        decoy.kill()
        decoy.wait()
    gone = run("env", "--state-dir", str(state))
    assert gone.returncode == 2 and "no control plane runs" in gone.stderr
    # The session's control plane was not touched.
    assert upstream.running()


def test_own_go_mod_replaces_local_replacements_with_published_releases() -> None:
    upstream_mod = """module k8s.io/kubernetes

go 1.24.0

require (
\tgithub.com/spf13/pflag v1.0.6
\tk8s.io/api v0.0.0
\tk8s.io/endpointslice v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/endpointslice => ./staging/src/k8s.io/endpointslice
\tk8s.io/sample-cli-plugin => ./staging/src/k8s.io/sample-cli-plugin
)
"""
    programs = kubernetes()
    minor_patch = programs.release.split(".", 1)[1]
    mod = own_go_mod(programs, upstream_mod)
    assert f"require k8s.io/kubernetes {programs.release}\n" in mod
    assert "go 1.24.0\n" in mod
    assert f"\tk8s.io/api => k8s.io/api v0.{minor_patch}\n" in mod
    assert f"\tk8s.io/endpointslice => k8s.io/endpointslice v0.{minor_patch}\n" in mod
    assert "sample-cli-plugin" not in mod  # not required by upstream: nothing to replace
    assert "pflag" not in mod  # MVS and `go mod tidy` take the rest from upstream's go.mod


def test_own_go_mod_for_etcd_uses_the_sibling_versions_upstream_requires() -> None:
    from kannon.testing.upstream.build import etcd

    upstream_mod = """module go.etcd.io/etcd/server/v3

go 1.23.0

require (
\tgo.etcd.io/etcd/client/v2 v2.305.21
\tgo.etcd.io/etcd/raft/v3 v3.5.21
)

replace (
\tgo.etcd.io/etcd/client/v2 => ../client/v2
\tgo.etcd.io/etcd/raft/v3 => ../raft
)

replace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY
"""
    mod = own_go_mod(etcd(), upstream_mod)
    assert "\tgo.etcd.io/etcd/client/v2 => go.etcd.io/etcd/client/v2 v2.305.21\n" in mod
    assert "\tgo.etcd.io/etcd/raft/v3 => go.etcd.io/etcd/raft/v3 v3.5.21\n" in mod
    assert "FORBIDDEN" not in mod and "go.etcd.io/etcd =>" not in mod
