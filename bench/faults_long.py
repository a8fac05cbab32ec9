"""The fault suite's long profile: many master SIGKILLs per backend, then rerun until done (run by hand).

    python bench/faults_long.py [--kills 12] [--campaigns 1] [--backends local,spawn,kubernetes,docker]
                                [--seed N] [--size 100] [--markdown]

Each campaign builds the 100-task DAG of tests/faults/ledger.py with a real ``kannon build`` master process,
SIGKILLs the master after the k-th ``started``/``launched``/``succeeded`` event of its --events log (k drawn from
the seed; the seed is printed, ``--seed`` or KANNON_FAULTS_SEED reproduces the kill points), reruns it, and so on
``--kills`` times before letting the last master finish. After every kill it scans /proc for anything the master
left running; at the end it checks the exactly-once ledger (no task's run() ever started once its output existed,
each output written by exactly one run, every value right) and, on the emulator, that no Job or pod is left (on
Docker, that no container of the run is left; docker needs an engine and the test image, see .ci/docker-setup.sh).

Prints one JSON line per campaign, then the figures (``--markdown``: as the table in docs/faults.md). Exits 1 if
any campaign found a task run more than once, a wrong output or an orphan.

The short profile of the same checks runs in CI: ``pytest tests/faults`` (3 kill points per backend). The
hand-off property tests hunt with new random examples in ``python bench/explore_properties.py``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kannon.testing import KubeEmulator  # noqa: E402
from tests.faults.figures import Figures  # noqa: E402
from tests.faults.harness import (  # noqa: E402
    CampaignResult,
    docker_args,
    docker_leftovers,
    k8s_args,
    k8s_leftovers,
    local_leftovers,
    run_campaign,
    run_campaign_with_leftovers,
)


def campaign(backend: str, kills: int, seed: int, size: int) -> tuple[CampaignResult, list[str]]:
    with tempfile.TemporaryDirectory(prefix=f"kannon-faults-{backend}-") as tmp:
        workdir = Path(tmp)
        log = lambda line: print(line, file=sys.stderr)  # noqa: E731
        if backend == "kubernetes":
            with KubeEmulator(runtime="process", namespace="default", bookmark_interval=0.3) as kube:
                args, env = k8s_args(kube, workdir)
                return run_campaign_with_leftovers(workdir, kills, seed, args, lambda rid: k8s_leftovers(kube, rid),
                                                   env, size=size, log=log)  # fmt: skip
        if backend == "docker":
            import docker

            from tests.support.services import TEST_IMAGE as IMAGE

            engine = docker.from_env()
            left_in = lambda rid: docker_leftovers(engine, rid)  # noqa: E731
            return run_campaign_with_leftovers(workdir, kills, seed, docker_args(IMAGE), left_in, size=size, log=log)
        mode = "spawn" if backend == "spawn" else "fork"
        args = ["--local-mode", mode, "--max-parallel", "4"]
        return run_campaign(workdir, kills, seed, args, size=size, after_kill=local_leftovers, log=log), []


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=12, help="master SIGKILLs per campaign (default 12)")
    p.add_argument("--campaigns", type=int, default=1, help="campaigns per backend (default 1)")
    p.add_argument("--backends", default="local,spawn,kubernetes",
                   help="comma-separated: local, spawn, kubernetes, docker")
    p.add_argument("--seed", type=int, help="seed of the first campaign (default: random, printed)")
    p.add_argument("--size", type=int, default=100, help="tasks in the DAG (default 100)")
    p.add_argument("--markdown", action="store_true", help="print the figures as a markdown table")
    ns = p.parse_args()

    seeder = random.Random(ns.seed if ns.seed is not None else random.SystemRandom().randrange(1, 2**31))
    figures = Figures()
    problems: list[str] = []
    started = time.monotonic()
    rows = []
    for backend in [b.strip() for b in ns.backends.split(",") if b.strip()]:
        for _ in range(ns.campaigns):
            seed = seeder.randrange(1, 2**31)
            print(f"{backend}: campaign seed={seed} ({ns.kills} kills)", file=sys.stderr)
            result, left = campaign(backend, ns.kills, seed, ns.size)
            row = {
                "backend": backend, "seed": seed, "kills_planned": ns.kills, "kills_survived": result.kills_survived,
                "kill_points": [f"{k.kind}#{k.k}/{k.planned}" for k in result.kills],
                "generations": result.generations, "task_runs": result.ledger["runs"],
                "interrupted_runs": result.ledger["interrupted"],
                "tasks_run_more_than_once": result.ledger["tasks_run_more_than_once"],
                "wrong_outputs": len(result.wrong_values), "orphans": result.orphans, "adopted": result.adopted,
                "seconds": round(result.seconds, 1),
            }  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
            figures.kill_points += result.kills_survived
            figures.faults[f"master SIGKILL ({backend})"] += result.kills_survived
            figures.tasks_run_more_than_once += result.ledger["tasks_run_more_than_once"]
            figures.orphans += result.orphans
            figures.campaigns.append(f"{backend}: {result.describe()}")
            problems += [f"{backend} seed={seed}: {v}" for v in result.violations]
            problems += [f"{backend} seed={seed}: wrong output of {label}" for label in result.wrong_values]
            problems += [f"{backend} seed={seed}: left behind: {x}" for x in left]
            if result.kills_survived < ns.kills:
                problems.append(f"{backend} seed={seed}: only {result.kills_survived} of {ns.kills} kill points hit")
            if result.orphans and not left:
                problems.append(f"{backend} seed={seed}: {result.orphans} orphaned process(es) after kills")

    if ns.markdown:
        print("\n| backend | seed | kill points survived | task runs (interrupted) | tasks run more than once | "
              "wrong outputs | orphans | adopted (Jobs, containers) | wall time |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['backend']} | {r['seed']} | {r['kills_survived']}/{r['kills_planned']} | {r['task_runs']} "
                  f"({r['interrupted_runs']}) | {r['tasks_run_more_than_once']} | {r['wrong_outputs']} | "
                  f"{r['orphans']} | {r['adopted']} | {r['seconds']} s |")  # fmt: skip
    print("\n" + "\n".join(figures.lines()))
    print(f"total {time.monotonic() - started:.0f} s")
    for line in problems:
        print(f"PROBLEM: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
