"""The master SIGKILLed at event-chosen points of a 100-task DAG, then rerun until done.

Guarantee checked (see tests/faults/ledger.py for the definition): once a task's output exists its run() never
executes again, every task ends with exactly one committed output with the right value, and nothing of a killed
master survives it — no process (local), on Kubernetes no Job or pod left running once the run is over (the Jobs a
killed master leaves are adopted by the next one, not orphaned), and on Docker no container of the run left at all
(running ones are adopted by the next master, finished ones removed).

Kill points are drawn from the campaign seed (printed; KANNON_FAULTS_SEED=N reproduces them): after the k-th
``started``/``launched``/``succeeded`` event in the master's --events log, never after a fixed sleep.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from kannon.testing import KubeEmulator
from tests.faults.figures import Figures
from tests.faults.harness import (
    CampaignResult,
    campaign_seed,
    docker_args,
    docker_leftovers,
    k8s_args,
    k8s_leftovers,
    local_leftovers,
    run_campaign,
    run_campaign_with_leftovers,
)
from tests.support.services import TEST_IMAGE as IMAGE

KILLS = 3


def record(figures: Figures, result: CampaignResult, backend: str) -> None:
    print(f"\n{backend} campaign: {result.describe()}", file=sys.stderr)
    figures.kill_points += result.kills_survived
    if result.kills_survived:
        figures.fault(f"master SIGKILL ({backend})", result.kills_survived)
    figures.tasks_run_more_than_once += result.ledger["tasks_run_more_than_once"]
    figures.orphans += result.orphans
    figures.campaigns.append(f"{backend}: {result.describe()}")


def check(result: CampaignResult, kills: int) -> None:
    assert result.final_code == 0
    assert result.kills_survived == kills, result.describe()
    assert result.violations == [], "\n".join(result.violations)
    assert result.ledger["tasks_run_more_than_once"] == 0
    assert result.wrong_values == [], f"wrong final outputs: {result.wrong_values}"
    assert result.orphans == 0, result.describe()
    assert result.ledger["runs"] >= 100  # every task ran at least once in all


@pytest.mark.timeout(900)
def test_master_sigkill_local_fork(tmp_path: Path, figures: Figures) -> None:
    seed = campaign_seed(1288398407)
    print(f"local campaign seed={seed}", file=sys.stderr)
    result = run_campaign(tmp_path, KILLS, seed, ["--max-parallel", "4"], after_kill=local_leftovers)
    record(figures, result, "local")
    check(result, KILLS)


@pytest.mark.timeout(900)
def test_master_sigkill_local_fork_with_reused_processes(tmp_path: Path, figures: Figures) -> None:
    """Processes waiting for their next bullet are the fork server's children too: none outlives a killed master."""
    seed = campaign_seed(2114650261)
    print(f"local (reused processes) campaign seed={seed}", file=sys.stderr)
    result = run_campaign(tmp_path, KILLS, seed, ["--max-parallel", "4", "--local-reuse-processes"],
                          after_kill=local_leftovers)  # fmt: skip
    record(figures, result, "local, reused processes")
    check(result, KILLS)


@pytest.mark.k8s
@pytest.mark.timeout(900)
def test_master_sigkill_kubernetes_emulator(kube: KubeEmulator, tmp_path: Path, figures: Figures) -> None:
    seed = campaign_seed(1288398407)
    print(f"kubernetes campaign seed={seed}", file=sys.stderr)
    args, env = k8s_args(kube, tmp_path)
    result, left = run_campaign_with_leftovers(tmp_path, KILLS, seed, args, lambda rid: k8s_leftovers(kube, rid), env)
    assert result.run_id is not None
    record(figures, result, "kubernetes")
    assert left == []
    check(result, KILLS)


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_master_sigkill_docker(docker_engine: Any, tmp_path: Path, figures: Figures) -> None:
    seed = campaign_seed(1288398407)
    print(f"docker campaign seed={seed}", file=sys.stderr)
    result, left = run_campaign_with_leftovers(tmp_path, KILLS, seed, docker_args(IMAGE),
                                               lambda rid: docker_leftovers(docker_engine, rid))  # fmt: skip
    assert result.run_id is not None
    record(figures, result, "docker")
    assert left == []
    check(result, KILLS)
