"""Benchmark the Docker backend: the quick-start DAG on containers, and the per-container overhead.

    python bench/bench_docker.py [--image kannon-test:latest] [--samples 10] [--bullet-seconds 1.0]

Needs a Docker engine and the image (``.ci/docker-setup.sh`` builds ``kannon-test:latest``; the host's Python is
bind-mounted into it, as in the tests). Prints one results row per measurement:

- ``container_cycle``: a trivial child (``python -S -c pass``) launched through DockerExecutor, sequentially:
  launch->Started (create + start) and launch->Finished (+ wait, inspect, log, remove), median over samples, next to
  the same interpreter started as a plain subprocess.
- ``quickstart``: examples/quickstart on the docker backend: wall time against the DAG's critical path
  (A, B, F, G in the master; C, D, E bullets), and the overhead per bullet level along that path.
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kannon.backends.base import Finished, Launch, RunInfo, Started  # noqa: E402
from kannon.backends.docker import DockerExecutor  # noqa: E402
from kannon.hints import Hints  # noqa: E402


class _Trivial(DockerExecutor):
    def command(self, launch: Launch) -> list[str]:
        return [self.python, "-S", "-c", "pass"]


def volumes() -> list[str]:
    return [f"{p}:{p}:ro" for p in dict.fromkeys([sys.prefix, sys.base_prefix, str(REPO)])]


def container_cycle(image: str, samples: int, workdir: Path) -> dict[str, float]:
    ex = _Trivial(image, volumes=volumes(), python=sys.executable, working_dir=workdir)
    events: queue.SimpleQueue[object] = queue.SimpleQueue()
    ex.start(RunInfo(f"bench{os.getpid()}", workdir / "run"), events.put)
    ex.prepare([])
    to_started, to_finished = [], []
    try:
        for n in range(samples):
            launch = Launch(f"k{n}", f"bench{os.getpid()}", f"{n:032x}", "Trivial", 1, (), {}, Hints(),
                            workdir / "run" / f"{n}.log")  # fmt: skip
            t0 = time.perf_counter()
            ex.launch(launch)
            while True:
                event = events.get(timeout=120)
                if isinstance(event, Started):
                    to_started.append(time.perf_counter() - t0)
                elif isinstance(event, Finished):
                    to_finished.append(time.perf_counter() - t0)
                    assert event.ok, event
                    break
    finally:
        ex.close()
    plain = []
    for _ in range(samples):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-S", "-c", "pass"], check=True)
        plain.append(time.perf_counter() - t0)
    return {
        "started_ms": 1000 * statistics.median(to_started),
        "finished_ms": 1000 * statistics.median(to_finished),
        "plain_process_ms": 1000 * statistics.median(plain),
    }


def quickstart(image: str, workdir: Path, branches: int, bullet_seconds: float) -> dict[str, float]:
    os.environ["QUICKSTART_BULLET_SECONDS"] = str(bullet_seconds)
    from kannon.cli import load_target
    from kannon.scheduler import Kannon

    root, extra = load_target(f"{REPO}/examples/quickstart/pipeline.py:root")
    pipeline = sys.modules[type(root).__module__]
    root = pipeline.root(branches)
    master_seconds = pipeline.MASTER_SECONDS
    ex = DockerExecutor(image, volumes=volumes())
    t0 = time.perf_counter()
    result = Kannon(executor=ex, sys_path=extra, env_to_inherit=["QUICKSTART_BULLET_SECONDS"]).build(root)
    wall = time.perf_counter() - t0
    assert result.ok
    critical = 4 * master_seconds + 3 * bullet_seconds  # A, B, F, G in the master; C -> D -> E as bullets
    return {"wall_s": wall, "critical_path_s": critical, "overhead_per_level_s": (wall - critical) / 3,
            "bullets": 3 * branches}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", default=os.environ.get("KANNON_TEST_IMAGE", "kannon-test:latest"))
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--branches", type=int, default=3)
    p.add_argument("--bullet-seconds", type=float, default=1.0)
    ns = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="kannon-bench-docker-") as tmp:
        workdir = Path(tmp)
        os.chdir(workdir)  # the quick-start workspace (./resources) lives here, mounted into the containers
        cycle = container_cycle(ns.image, ns.samples, workdir)
        print(f"bench=docker measure=container_cycle samples={ns.samples} "
              f"launch_to_started_ms={cycle['started_ms']:.0f} launch_to_finished_ms={cycle['finished_ms']:.0f} "
              f"plain_process_ms={cycle['plain_process_ms']:.0f}")  # fmt: skip
        qs = quickstart(ns.image, workdir, ns.branches, ns.bullet_seconds)
        print(
            f"bench=docker measure=quickstart bullets={qs['bullets']} wall_s={qs['wall_s']:.2f} "
            f"critical_path_s={qs['critical_path_s']:.2f} overhead_per_level_s={qs['overhead_per_level_s']:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
