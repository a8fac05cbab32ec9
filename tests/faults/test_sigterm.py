"""SIGTERM to the master mid-run: every child is gone within 10 s, on every backend, and the master exits 143.

Children are found the way an operator would: processes by the run id in their environment (and, for forked
children that never exec, by the marker the master was started with) in /proc; containers by label; Jobs and pods
through the emulator's API.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kannon.backends.docker import LABEL_RUN
from kannon.testing import KubeEmulator
from tests.e2e.docker.support import python_volumes
from tests.faults.figures import Figures
from tests.faults.harness import PY, Master, find_processes, k8s_args, kill_all, wait_until
from tests.support.services import TEST_IMAGE as IMAGE

CHILDREN = 3
GRACE = 10.0  # the guarantee: every child gone this long after the master got SIGTERM


def start_sleepers(tmp_path: Path, args: list[str], env: dict[str, str] | None = None) -> Master:
    announce = tmp_path / "announce"
    announce.mkdir()
    env = {**(env or {}), "KANNON_FAULTS_ANNOUNCE": str(announce), "KANNON_FAULTS_SLEEPERS": str(CHILDREN)}
    master = Master(tmp_path, "tests.faults.ledger:sleepers", [*args, "--max-parallel", str(CHILDREN)], env)
    # running user code, not just launched: each child wrote its pid file
    wait_until(lambda: len(list(announce.glob("*.pid"))) == CHILDREN or master.proc.poll() is not None, 180,
               "the children never all started")  # fmt: skip
    assert master.proc.poll() is None, master.output()
    master.tail.poll()
    return master


def terminate_and_check(master: Master, figures: Figures, backend: str,
                        leftovers: Callable[[str], list[str]]) -> None:  # fmt: skip
    """SIGTERM the master; within GRACE seconds no child process and nothing ``leftovers(run_id)`` reports may
    remain; then the master must exit 143 and leave nothing at all."""
    run_id = master.tail.run_id
    assert run_id is not None
    markers = [f"KANNON_RUN_ID={run_id}", master.marker]
    assert find_processes(markers, exclude=[master.pid]), "no child process found before SIGTERM: the scan is blind"
    master.signal(signal.SIGTERM)
    sent = time.monotonic()
    left: list[str] = []
    while True:
        left = [f"process {p.pid} ({p.cmdline})" for p in find_processes(markers, exclude=[master.pid])]
        left += leftovers(run_id)
        if not left or time.monotonic() - sent > GRACE:
            break
        time.sleep(0.05)
    took = time.monotonic() - sent
    code = master.wait(timeout=120)
    after = [f"process {p.pid} ({p.cmdline})" for p in find_processes(markers)] + leftovers(run_id)
    figures.fault(f"SIGTERM to the master ({backend})")
    figures.orphans += len(after)
    print(f"{backend}: every child gone {took:.2f} s after SIGTERM; master exit {code}")
    assert not left, f"still there {GRACE} s after SIGTERM: {left}"
    assert not after, f"left behind after the master exited: {after}"
    assert code == 128 + signal.SIGTERM, master.output()
    assert "cancelled" in master.output()


@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_sigterm_local(tmp_path: Path, figures: Figures, mode: str) -> None:
    master = start_sleepers(tmp_path, ["--local-mode", mode])
    try:
        terminate_and_check(master, figures, f"local {mode}", lambda run_id: [])
    finally:
        master.stop()


@pytest.mark.docker
def test_sigterm_docker(tmp_path: Path, figures: Figures, docker_engine: Any) -> None:
    args = ["--backend", "docker", "--image", IMAGE, "--docker-python", PY, "--env", "PYTHONPATH"]
    for volume in python_volumes():
        args += ["--volume", volume]

    def running(run_id: str) -> list[str]:
        # sparse: no inspect per container, which would race with the removal being checked for
        containers = docker_engine.containers.list(all=True, sparse=True, filters={"label": f"{LABEL_RUN}={run_id}"})
        return [f"container {c.id[:12]} ({c.attrs.get('State')})" for c in containers]

    master = start_sleepers(tmp_path, args)
    run_id = master.tail.run_id or ""
    try:
        assert len(running(run_id)) == CHILDREN
        terminate_and_check(master, figures, "docker", running)
    finally:
        master.stop()
        for c in docker_engine.containers.list(all=True, sparse=True, filters={"label": f"{LABEL_RUN}={run_id}"}):
            c.remove(force=True)


@pytest.mark.k8s
def test_sigterm_kubernetes_emulator(tmp_path: Path, figures: Figures, kube: KubeEmulator) -> None:
    args, env = k8s_args(kube, tmp_path)

    def alive(run_id: str) -> list[str]:
        out = [f"job {name}" for name, job in kube.jobs().items()
               if job["metadata"]["labels"].get(LABEL_RUN) == run_id]  # fmt: skip
        out += [f"pod {name} ({pod['status'].get('phase')})" for name, pod in kube.pods().items()]
        return out

    master = start_sleepers(tmp_path, args, env)
    try:
        assert len(alive(master.tail.run_id or "")) == 2 * CHILDREN  # a Job and a pod each
        terminate_and_check(master, figures, "kubernetes emulator", alive)
    finally:
        master.stop()
        kill_all(find_processes([f"KANNON_RUN_ID={master.tail.run_id}"]))
        assert os.path.isdir(tmp_path)
