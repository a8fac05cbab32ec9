"""Benchmark the Kubernetes backend on the emulated control plane (process pods), and compare with kannon 0.1.4.

    python bench/bench_k8s.py [--bullet-seconds 1.0] [--noop 30] [--long-seconds 60]
                              [--original-venv /tmp/kannon014] [--skip-original] [--pods cold|warm|both]
                              [--only quickstart,long,noop]

Prints one JSON row per measurement (with its target where issue #3 sets one). ``--pods`` picks how the emulator
starts process pods: ``cold``, a fresh interpreter each (every pod re-imports gokart, ~0.8 s of CPU here, on the same
2 cores as the master: what a cluster spends on other nodes); ``warm``, forked from an interpreter per image that
imported gokart once (``KubeEmulator(warm_imports=...)``); ``both`` (default) measures each, the original kannon too.

- ``quickstart``: examples/quickstart (A, B, F, G in the master; C, D, E bullets in three branches) with process
  pods: wall time against the DAG's critical path; target <= 6.0 s. Also ``child_startup_s``: what one fresh
  ``python -m kannon`` interpreter costs here before any task code runs (every pod pays it; 2 cores shared); and
  ``control_plane_overhead_s`` (issue 16, target <= 0.30 s): the wall time minus the longest chain of the tasks'
  own durations (a pod's: the wall time its child measured for its record; a master task's: its run).
- ``requests``: API requests of that run: creates, log reads and list/watch requests; target <= 2 per task plus
  O(1) list/watch.
- ``long_bullet``: requests made while one bullet of ``--long-seconds`` runs (Started -> just before its end);
  target 0 (no polling).
- ``noop``: ``--noop`` no-op bullets under one master task, this kannon vs the original kannon 0.1.4 (installed
  with pip into ``--original-venv``, which needs Python < 3.12; its child script is written here) on the same kind
  of emulator; target: this kannon <= 1/5 of the original's wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kannon.backends.base import Finished, Launch, RunInfo, Started  # noqa: E402
from kannon.backends.kubernetes import K8sJobExecutor  # noqa: E402
from kannon.hints import Hints  # noqa: E402
from kannon.testing import KubeEmulator  # noqa: E402

ORIGINAL_PYTHON = "/root/.pyenv/versions/3.11.7/bin/python"  # kannon 0.1.4 requires Python < 3.12

# Process pods: "cold" starts a fresh interpreter per pod; "warm" forks each from a zygote per interpreter that
# imported these once (KubeEmulator(warm_imports=...)); both kannons get the same list.
WARM: dict[str, list[str] | None] = {"cold": None, "warm": ["gokart", "kannon.childwarm:warm_up"]}

NOOP = '''
import gokart
import luigi
import kannon


class NoOpBullet(kannon.TaskOnBullet):
    n = luigi.IntParameter()

    def run(self):
        self.dump(self.n)


class NoOpRoot(gokart.TaskOnKart):
    count = luigi.IntParameter()

    def requires(self):
        return [NoOpBullet(n=i) for i in range(self.count)]

    def run(self):
        self.dump(sum(self.load(t) for t in self.requires()))


def root():
    return NoOpRoot(count=int(__import__("os").environ["NOOP_COUNT"]))
'''

ORIGINAL_MASTER = '''
import logging, os, sys
from kubernetes import client, config
from kannon import Kannon
import noop_pipeline

logging.basicConfig(level=logging.WARNING)
config.load_kube_config(config_file=os.environ["KUBECONFIG"])
template = client.V1Job(
    metadata=client.V1ObjectMeta(namespace="default"),
    spec=client.V1JobSpec(backoff_limit=0, template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
        restart_policy="Never",
        containers=[client.V1Container(name="main", image="original:0.1.4", working_dir=os.getcwd(), env=[
            client.V1EnvVar(name="PATH", value=os.environ["CHILD_PATH"]),
            client.V1EnvVar(name="PYTHONPATH", value=os.getcwd())])]))))
Kannon(api_instance=client.BatchV1Api(), template_job=template, job_prefix="original",
       path_child_script="./run_child.py", env_to_inherit=[]).build(noop_pipeline.root())
print("original done")
'''

# The child script the original kannon requires users to write (its README's example, minus `fire`): it receives
# `--task-pkl-path "'<path>'"` (the original quotes the path inside the argv element).
ORIGINAL_CHILD = '''
import sys
import gokart
from gokart.target import make_target

path = sys.argv[sys.argv.index("--task-pkl-path") + 1].strip("'")
gokart.build(make_target(path).load(), reset_register=False)
'''


@contextlib.contextmanager
def emulator(pods: str, python: str = sys.executable) -> Iterator[KubeEmulator]:
    """An emulator with ``pods`` process pods; warm ones start from the steady state of a node whose image is warm:
    the zygote of ``python`` (the pods' interpreter) is ready before the clock starts."""
    with KubeEmulator(runtime="process", warm_imports=WARM[pods], warm_interpreters=[python]) as kube:
        kube.warm_up()
        yield kube


def template(workdir: Path, **env: str) -> dict[str, Any]:
    env_list = [{"name": "PYTHONPATH", "value": str(REPO)}, *({"name": k, "value": v} for k, v in env.items())]
    container = {"name": "main", "image": "kannon:bench", "workingDir": str(workdir), "env": env_list}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": "default"},
            "spec": {"template": {"spec": {"containers": [container]}}}}  # fmt: skip


def counts(requests: list[tuple[str, str, dict[str, str]]]) -> dict[str, int]:
    creates = sum(1 for m, _, _ in requests if m == "POST")
    job_creates = sum(1 for m, p, _ in requests if m == "POST" and p.endswith("/jobs"))
    logs = sum(1 for m, p, _ in requests if m == "GET" and p.endswith("/log"))
    watches = sum(1 for m, _, q in requests if m == "GET" and q.get("watch") not in (None, "0", "false"))
    return {"total": len(requests), "creates": creates, "job_creates": job_creates, "log_reads": logs,
            "watches": watches, "lists_and_other": len(requests) - creates - logs - watches}  # fmt: skip


def child_startup() -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        subprocess.run([sys.executable, "-c", "import kannon.child"], check=True, env=env)
        best = min(best, time.perf_counter() - t0)
    return best


def own_critical_path(result: Any) -> float:
    """The longest dependency chain of the tasks' own durations: a bullet's is the wall time its child measured
    for its record (from its process's start to the end of its work), a master task's its run in the master. What
    the wall time has on top is the control plane's and kannon's: creates, scheduling, pod start, the watch events
    and the log read that carry an end back, the next launch."""
    own: dict[str, float] = {}
    for tid, rec in result.tasks.items():
        usage = rec.usage if rec.placement.value == "bullet" else None
        last = rec.attempts[-1] if rec.attempts else None
        own[tid] = usage.wall_seconds if usage is not None else (last.duration or 0.0) if last else 0.0
    longest: dict[str, float] = {}

    def chain(tid: str) -> float:
        if tid not in longest:
            longest[tid] = own.get(tid, 0.0) + max((chain(d) for d in result.tasks[tid].deps if d in result.tasks),
                                                   default=0.0)  # fmt: skip
        return longest[tid]

    return max((chain(t) for t in result.tasks), default=0.0)


def quickstart(bullet_seconds: float, workdir: Path, pods: str) -> list[dict[str, Any]]:
    os.environ["QUICKSTART_BULLET_SECONDS"] = str(bullet_seconds)
    from kannon.cli import load_target
    from kannon.scheduler import Kannon

    os.chdir(workdir)
    root, extra = load_target(f"{REPO}/examples/quickstart/pipeline.py:root")
    with emulator(pods) as kube:
        executor = K8sJobExecutor(template(workdir), api_client=kube.api_client(), python=sys.executable)
        t0 = time.perf_counter()
        result = Kannon(executor=executor, sys_path=extra, env_to_inherit=["QUICKSTART_BULLET_SECONDS"]).build(root)
        wall = time.perf_counter() - t0
        requests = list(kube.requests)
    bullets = sum(1 for r in result.tasks.values() if r.placement.value == "bullet")
    master_seconds = float(os.environ.get("QUICKSTART_MASTER_SECONDS", "0.2"))
    critical = 4 * master_seconds + 3 * bullet_seconds
    own = own_critical_path(result)
    c = counts(requests)
    return [
        {"bench": "quickstart", "pods": pods, "wall_s": round(wall, 2), "critical_path_s": critical,
         "overhead_per_bullet_level_s": round((wall - critical) / 3, 2), "child_startup_s": round(child_startup(), 2),
         "target_wall_s": 6.0, "meets_target": wall <= 6.0,
         # issue 16: wall minus the tasks' own critical path (each pod's own wall, from its child's record)
         "own_critical_path_s": round(own, 3), "control_plane_overhead_s": round(wall - own, 3),
         "target_control_plane_overhead_s": 0.30},
        # per run, whatever the task count: the lease and the run's Secret (creates), 2 lists, 2 watches, reads
        {"bench": "requests", "pods": pods, **c, "tasks": bullets,
         "per_task": round((c["job_creates"] + c["log_reads"]) / bullets, 2),
         "target": "<= 2 per task + O(1) list/watch",
         "meets_target": c["job_creates"] + c["log_reads"] <= 2 * bullets
         and c["total"] - c["job_creates"] - c["log_reads"] <= 12},
    ]  # fmt: skip


class _Script(K8sJobExecutor):
    def command(self, launch: Launch) -> list[str]:
        return [sys.executable, "-S", "-c", launch.child_args[0]]


def long_bullet(seconds: float, workdir: Path) -> dict[str, Any]:
    events: list[object] = []
    cond = threading.Condition()

    def report(event: object) -> None:
        with cond:
            events.append(event)
            cond.notify_all()

    with KubeEmulator(runtime="process") as kube:
        executor = _Script(template(workdir), api_client=kube.api_client(), python=sys.executable)
        executor.start(RunInfo("benchlong", workdir / "run"), report)
        code = f"import time; time.sleep({seconds})"
        launch = Launch("k", "benchlong", "0" * 32, "Long", 1, (code,), {}, Hints(), workdir / "run" / "long.log")
        executor.launch(launch)
        with cond:
            cond.wait_for(lambda: any(isinstance(e, Started) for e in events), timeout=60)
        during_start = len(kube.requests)
        with cond:
            cond.wait_for(lambda: any(isinstance(e, Finished) for e in events), timeout=seconds + 60)
        # requests between Started and the bullet's end; the one log read at the end is the last request
        during = [r for r in kube.requests[during_start:] if not r[1].endswith("/log")]
        executor.close()
    return {"bench": "long_bullet", "seconds": seconds, "requests_while_running": len(during), "target": 0,
            "meets_target": not during}  # fmt: skip


def noop_new(count: int, workdir: Path, pods: str) -> tuple[float, float, float]:
    from kannon.cli import load_target
    from kannon.scheduler import Kannon

    # One module file for both pod modes: a second file of the same module name would not be imported again.
    source = workdir.parent.parent / "noop_pipeline.py"
    if not source.exists():
        source.write_text(NOOP)
    os.environ["NOOP_COUNT"] = str(count)
    os.chdir(workdir)
    root, extra = load_target(f"{source}:root")
    with emulator(pods) as kube:
        executor = K8sJobExecutor(template(workdir), api_client=kube.api_client(), python=sys.executable)
        before = _cpu()
        t0 = time.perf_counter()
        result = Kannon(executor=executor, sys_path=extra).build(root)
        wall = time.perf_counter() - t0
    after = _cpu()  # after the emulator stopped: a zygote's children count once it is reaped
    assert result.ok
    return wall, after[0] - before[0], after[1] - before[1]


def _cpu() -> tuple[float, float]:
    """CPU seconds of this process (master + emulator) and of its finished children (the pods' processes)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def ensure_original(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([ORIGINAL_PYTHON, "-m", "venv", str(venv)], check=True)
    check = subprocess.run([str(python), "-c", "import kannon.master"], capture_output=True)
    if check.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "kannon==0.1.4"], check=True)
    return python


def noop_original(count: int, workdir: Path, python: Path, pods: str) -> float:
    (workdir / "noop_pipeline.py").write_text(NOOP)
    (workdir / "master.py").write_text(ORIGINAL_MASTER)
    (workdir / "run_child.py").write_text(ORIGINAL_CHILD)
    with emulator(pods, python=str(python)) as kube:  # the original's interpreter gets its zygote, as ours does
        kubeconfig = kube.write_kubeconfig(workdir / "kubeconfig")
        env = {"PATH": f"{python.parent}:{os.environ.get('PATH', '')}", "KUBECONFIG": str(kubeconfig),
               "NOOP_COUNT": str(count), "PYTHONPATH": str(workdir), "HOME": os.environ.get("HOME", "/root"),
               "CHILD_PATH": f"{python.parent}:{os.environ.get('PATH', '')}"}  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.run([str(python), "master.py"], cwd=workdir, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode != 0 or "original done" not in proc.stdout:
        raise RuntimeError(f"the original kannon failed:\n{proc.stdout}\n{proc.stderr}")
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bullet-seconds", type=float, default=1.0)
    parser.add_argument("--noop", type=int, default=30)
    parser.add_argument("--long-seconds", type=float, default=60.0)
    parser.add_argument("--original-venv", type=Path, default=Path(tempfile.gettempdir()) / "kannon014")
    parser.add_argument("--skip-original", action="store_true")
    parser.add_argument("--pods", choices=("cold", "warm", "both"), default="both",
                        help="process pods started fresh (cold), forked from a pre-imported zygote (warm), or both")
    parser.add_argument("--only", default="quickstart,long,noop", help="which measurements (comma-separated)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    modes = ["cold", "warm"] if args.pods == "both" else [args.pods]
    original_python = None if args.skip_original or "noop" not in only else ensure_original(args.original_venv)
    with tempfile.TemporaryDirectory(prefix="kannon-bench-k8s-") as tmp:
        base = Path(tmp)
        for pods in modes:
            for sub in ("quickstart", "noop-new", "noop-original"):
                (base / pods / sub).mkdir(parents=True)
            if "quickstart" in only:
                for row in quickstart(args.bullet_seconds, base / pods / "quickstart", pods):
                    print(json.dumps(row), flush=True)
        if "long" in only:
            (base / "long").mkdir()
            print(json.dumps(long_bullet(args.long_seconds, base / "long")), flush=True)
        for pods in modes if "noop" in only else []:
            new, master_cpu, pods_cpu = noop_new(args.noop, base / pods / "noop-new", pods)
            row: dict[str, Any] = {"bench": "noop", "pods": pods, "bullets": args.noop, "kannon_wall_s": round(new, 2),
                                   "cpu_s_master_and_emulator": round(master_cpu, 1), "cpu_s_pods": round(pods_cpu, 1),
                                   "cores": os.cpu_count()}  # fmt: skip
            if original_python is not None:
                original = noop_original(args.noop, base / pods / "noop-original", original_python, pods)
                row.update(original_0_1_4_wall_s=round(original, 2), ratio=round(new / original, 3), target_ratio=0.2,
                           meets_target=new <= original / 5)  # fmt: skip
            print(json.dumps(row), flush=True)
        os.chdir(REPO)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
