"""Scale of one master (issue #16): per-task master CPU, API requests, peak RSS and wall, N = 100 .. 10,000 bullets.

    python bench/bench_scale.py [--sizes 100,1000] [--long] [--parallel 100,500] [--shapes flat,lattice]
                                [--only k8s,local,child] [--profile N] [--profile-out FILE] [--py-spy N]

Three processes per Kubernetes measurement, so that nothing else is charged to the master: this orchestrator; the
emulator (``_emulator``: ``KubeEmulator`` with warm process pods, forked from a zygote that imported gokart and
kannon.child once, ready before any master starts; it counts the API requests and, once it stopped and reaped its
zygote, the pods' CPU); and the master (``_master``: ``Kannon(executor=K8sJobExecutor(...)).build(root)`` with every
default, the run Lease and the client-side rate limit included). The master reports its process CPU time
(``getrusage(RUSAGE_SELF)``: every thread of the process, not only the main one) around ``build()`` only (imports
excluded), and its peak RSS (``ru_maxrss``, the whole process). That CPU is also split exactly by thread
(``thread_cpu_ms_per_task``: each thread's ``time.thread_time()`` when it ends, summed by thread name: the main
thread, the scheduling loop, the two watches, the Job creates, the log followers, the pools), and the cyclic garbage
collector's share of it by generation (``gc_ms_per_task``).

Shapes: ``flat`` = one master task requiring N independent no-op bullets (bench/_dags.py ``noop_root``);
``lattice`` = 3 layers of N/3 bullets, each requiring three of the layer below (``layers_root``, PLAN_LENGTH=3).
Per-run constant costs (client start, lease, plan of the root, the zygote's imports) are measured by a run with
N = 0 bullets (the root task only) and subtracted: ``per_task = (X(N) - X(0)) / N``. Wall over the pods' CPU floor:
``wall / (pods_cpu / cores)``, where pods_cpu is the pods' own CPU (the zygote's imports subtracted).

``local``: 200 no-op bullets through ``kannon build --max-parallel 2`` (local fork server; and with
``--local-reuse-processes``) against a script calling ``luigi.build(workers=2)`` on the same DAG, each a whole
process (interpreter start and imports included), runs interleaved. ``child``: a warm child's own CPU around a
no-op ``run()``: the CPU of all children per bullet on the
emulator's warm pods (above) and on the local fork server (``getrusage(RUSAGE_CHILDREN)`` of a master after its fork
server was reaped, by difference between 200 and 20 bullets, so the fork server's own start is excluded); and on
both, ``child_self_cpu_ms_per_task``: the CPU each child measured itself for its child-result record, so without
the runtime around it (the fork, the exit after the record, the emulator pod's PID-namespace wrapper).
``--profile N``: the master of one flat run of N bullets under cProfile in every thread (``threading.setprofile``
starts a ``cProfile.Profile(time.thread_time)`` in each new thread: CPU time, not wall), merged; prints the top
functions by own and cumulative time. ``--py-spy N``: the same run's master sampled by py-spy (``pip install
py-spy``; 200 Hz, ``--gil``: the thread holding the GIL, so sleeping and blocked threads are not counted), which does
not inflate call-heavy code as cProfile does; prints the frames' inclusive shares, the raw stacks go to
``--py-spy-out``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(REPO), str(BENCH)]

import bench_local  # noqa: E402

WARM_IMPORTS = ["gokart", "kannon.childwarm:warm_up"]


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _children_self_cpu_s(result: Any) -> float:
    """The bullets' own CPU as each child measured it for its record (``Usage.cpu_seconds``: its process since it
    was forked or started, and what it reaped), so without what the runtime around it costs: the local fork
    server's fork and the exit after the record, the emulator pod's PID-namespace wrapper process."""
    total = 0.0
    for r in result.tasks.values():
        usage = r.usage if r.placement.value == "bullet" else None
        if usage is not None:
            total += usage.cpu_seconds
    return total


def emit(row: dict[str, Any]) -> dict[str, Any]:
    print(json.dumps(row), flush=True)
    return row


# -- the emulator's process -----------------------------------------------------------------------------------------
def emulator_main(kubeconfig: str) -> None:
    """Serve until stdin closes; then print the request counts, the emulator's own CPU and the pods' CPU."""
    from kannon.testing import KubeEmulator

    with KubeEmulator(runtime="process", warm_imports=WARM_IMPORTS, warm_interpreters=[sys.executable]) as kube:
        kube.warm_up()
        kube.write_kubeconfig(kubeconfig)
        print("ready", flush=True)
        sys.stdin.read()
        requests = list(kube.requests)
    own = _cpu(resource.RUSAGE_SELF)
    pods = _cpu(resource.RUSAGE_CHILDREN)  # the zygote and every pod it forked, now that it has been reaped
    import bench_k8s

    print(json.dumps({"requests": bench_k8s.counts(requests), "emulator_cpu_s": own, "pods_cpu_s": pods}))


# -- the master's process -------------------------------------------------------------------------------------------
class _ThreadProfiles:
    """cProfile in every thread: the main thread's profiler plus one started by each new thread (CPU time)."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _start(self, *_: Any) -> None:
        prof = cProfile.Profile(time.thread_time)
        with self._lock:
            self.profiles.append(prof)
        prof.enable()  # replaces this hook for the rest of the thread

    def __enter__(self) -> _ThreadProfiles:
        threading.setprofile(self._start)
        self._start()
        return self

    def __exit__(self, *_: Any) -> None:
        threading.setprofile(None)
        self.profiles[0].disable()

    def stats(self) -> pstats.Stats:
        out = io.StringIO()
        stats = pstats.Stats(self.profiles[0], stream=out)
        for prof in self.profiles[1:]:
            stats.add(prof)
        return stats


def _print_allocations(snapshot: Any, traced: tuple[int, int], top: int = 25) -> None:
    """The top allocation sites still held (by line, then by traceback), to stderr (stdout carries the result)."""
    out = sys.stderr
    snapshot = snapshot.filter_traces([tracemalloc_filter(False, "<frozen importlib._bootstrap*>"),
                                       tracemalloc_filter(False, "<unknown>")])  # fmt: skip
    print(f"tracemalloc: held {traced[0] / 1e6:.1f} MB, peak {traced[1] / 1e6:.1f} MB", file=out)
    for key in ("lineno", "traceback"):
        print(f"-- top {top} by {key}", file=out)
        for stat in snapshot.statistics(key)[:top]:
            print(f"{stat.size / 1024:10.1f} KiB {stat.count:8d} blocks  {stat.traceback[0]}", file=out)
            if key == "traceback":
                for line in stat.traceback.format(limit=12, most_recent_first=True)[2:]:
                    print(f"        {line}", file=out)
    out.flush()


def tracemalloc_filter(inclusive: bool, pattern: str) -> Any:
    import tracemalloc

    return tracemalloc.Filter(inclusive, pattern)


class _ThreadCpu:
    """Each thread's own CPU (``time.thread_time`` at its end), summed by name with the trailing number dropped, so
    that the master's CPU splits exactly (no profiler's inflation) between the loop, the watches, the pools ..."""

    def __init__(self) -> None:
        self.by_name: dict[str, float] = {}
        self._lock = threading.Lock()
        self._run = threading.Thread.run

    def __enter__(self) -> _ThreadCpu:
        me, run = self, self._run

        def measured(thread: threading.Thread) -> None:
            try:
                run(thread)
            finally:
                me.add(thread.name, time.thread_time())

        threading.Thread.run = measured  # type: ignore[method-assign,assignment]
        self._main0 = time.thread_time()
        return self

    def add(self, name: str, cpu: float) -> None:
        key = re.sub(r"(-log)-.*$", r"\1", name.split(" (")[0])  # one log follower per pod, named after its Job
        key = key.rstrip("0123456789_").rstrip("-") or name
        with self._lock:
            self.by_name[key] = self.by_name.get(key, 0.0) + cpu

    def __exit__(self, *_: Any) -> None:
        self.add("main", time.thread_time() - self._main0)
        threading.Thread.run = self._run  # type: ignore[method-assign]


class _GcTimer:
    """Seconds the cyclic garbage collector ran in the master, by generation (``gc.callbacks``): a collection runs
    on whichever thread allocated last, so the thread split above spreads it; this says how much of the CPU it is."""

    def __init__(self) -> None:
        self.by_generation: dict[str, float] = {}
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            key = f"gen{info['generation']}"
            self.by_generation[key] = self.by_generation.get(key, 0.0) + time.perf_counter() - self._started

    def __enter__(self) -> _GcTimer:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: Any) -> None:
        gc.callbacks.remove(self._callback)


class _RssSampler(threading.Thread):
    """The master's resident set every 0.1 s (``/proc/self/statm``): when in the build its peak comes, which
    ``ru_maxrss`` does not say (the plan, the launches, or the root's own ``gokart.build`` at the end). Its own CPU
    is taken out of the master's figures."""

    def __init__(self) -> None:
        super().__init__(name="bench-rss", daemon=True)
        self.stop = threading.Event()
        self.samples: list[tuple[float, float]] = []
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.t0 = time.perf_counter()
        self.root_span: list[float] = []  # when the root's own build started and ended (seconds from t0)

    def mark_root(self) -> None:
        self.root_span.append(time.perf_counter() - self.t0)
        self.samples.append((self.root_span[-1], self._resident()))

    def _resident(self) -> float:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * self.page / 2**20

    def run(self) -> None:
        t0 = self.t0
        while True:
            self.samples.append((time.perf_counter() - t0, self._resident()))
            if self.stop.wait(0.1):
                return

    def summary(self, wall: float) -> dict[str, float]:
        at, peak = max(self.samples, key=lambda s: s[1])
        # the resident set along the run: linear growth is per-task records, a step at the end the root's own build
        along = {f: round(next((r for t, r in self.samples if wall and t / wall >= f), self.samples[-1][1]))
                 for f in (0.1, 0.5, 0.9, 0.98)}  # fmt: skip
        # the peak by phase: the run's own records and launches, the root's build in the master (the user's code:
        # NoOpRoot loads every input), what kannon does once the root finished (the result, the report)
        start, end = [*self.root_span, wall, wall][:2]
        phases = {"before_root": [r for t, r in self.samples if t < start],
                  "root": [r for t, r in self.samples if start <= t <= end],
                  "after_root": [r for t, r in self.samples if t > end]}  # fmt: skip
        return {"rss_peak_mb": round(peak), "rss_peak_at_fraction_of_wall": round(at / wall, 3) if wall else 0.0,
                "rss_at_end_mb": round(self.samples[-1][1]), "rss_mb_at_fraction_of_wall": along,
                "rss_peak_mb_by_phase": {k: round(max(v)) for k, v in phases.items() if v}}  # fmt: skip


def master_main(kubeconfig: str, shape: str, count: int, parallel: int, profile_out: str | None) -> dict[str, Any]:
    import _dags
    from kubernetes import config

    from kannon.backends.kubernetes import K8sJobExecutor
    from kannon.scheduler import Kannon

    os.environ["NOOP_COUNT"] = str(count)
    if shape == "flat":
        root: Any = _dags.noop_root()
    else:
        os.environ.update(PLAN_LENGTH="3", PLAN_BRANCHES=str(count // 3))
        root = _dags.layers_root() if count else _dags.noop_root()
    env_list = [{"name": "PYTHONPATH", "value": os.pathsep.join([str(REPO), str(BENCH)])}]
    # The bullets' declared size, as a namespace's LimitRange gives every pod in most clusters: what lets kannon pack
    # several into one pod (K8sJobExecutor pack_limit); --pack 1 measures one pod per bullet.
    size = {"requests": {"cpu": "100m", "memory": "128Mi"}}
    container = {"name": "main", "image": "kannon:bench", "workingDir": os.getcwd(), "env": env_list,
                 "resources": size}  # fmt: skip
    template = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": "default"},
                "spec": {"template": {"spec": {"containers": [container]}}}}  # fmt: skip
    pack = os.environ.get("KANNON_BENCH_PACK")  # --pack: the executor's own default unless given
    executor = K8sJobExecutor(template, api_client=config.new_client_from_config(kubeconfig), python=sys.executable,
                              **({"pack": int(pack)} if pack else {}))  # fmt: skip
    kannon = Kannon(executor=executor, max_parallel=parallel, sys_path=[str(BENCH)])
    profiles = _ThreadProfiles() if profile_out else None
    trace = int(os.environ.get("KANNON_BENCH_TRACEMALLOC", "0") or 0)
    dump_to = os.environ.get("KANNON_BENCH_TRACEMALLOC_OUT")
    rss = _RssSampler()
    from kannon import runner

    run_one = runner.run_one

    def marked_run(task: Any) -> None:
        if task is not root:
            return run_one(task)
        if trace and dump_to:  # what is held when the root's own build starts (garbage included, then without)
            tracemalloc.take_snapshot().dump(dump_to + ".before-root")
            gc.collect()
            tracemalloc.take_snapshot().dump(dump_to + ".before-root-collected")
        rss.mark_root()
        try:
            run_one(task)
        finally:
            rss.mark_root()

    runner.run_one = marked_run  # type: ignore[assignment]
    if trace:
        import tracemalloc

        tracemalloc.start(trace)
    threads = _ThreadCpu()
    gc_time = _GcTimer()
    cpu0, t0 = _cpu(resource.RUSAGE_SELF), time.perf_counter()
    with threads, gc_time:
        rss.start()
        if profiles is not None:
            with profiles:
                result = kannon.build(root)
        else:
            result = kannon.build(root)
        rss.stop.set()
        rss.join()
    wall, cpu = time.perf_counter() - t0, _cpu(resource.RUSAGE_SELF) - cpu0
    cpu -= threads.by_name.pop("bench-rss", 0.0)
    # threads still running when build() returned (none, unless one hangs) are not in the split: the rest says so
    threads.by_name["(not attributed)"] = cpu - sum(threads.by_name.values())
    if trace:  # what is still held once build() returned (the executor and the result are still referenced)
        snapshot = tracemalloc.take_snapshot()
        if dump_to:
            snapshot.dump(dump_to + ".end")
        _print_allocations(snapshot, tracemalloc.get_traced_memory())
        tracemalloc.stop()
    if not result.ok:
        raise SystemExit(f"the build failed: {result}")
    if profiles is not None and profile_out:
        profiles.stats().dump_stats(profile_out)
    bullets = sum(1 for r in result.tasks.values() if r.placement.value == "bullet")
    return {"wall_s": wall, "master_cpu_s": cpu, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "bullets": bullets, "children_self_cpu_s": _children_self_cpu_s(result),
            "threads_profiled": len(profiles.profiles) if profiles else 0,
            "thread_cpu_s": threads.by_name, "gc_s": gc_time.by_generation, **rss.summary(wall)}  # fmt: skip


# -- the orchestrator -----------------------------------------------------------------------------------------------
def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return bench_local._env(extra)


def k8s_run(shape: str, count: int, parallel: int, profile_out: str | None = None,
            spy_out: str | None = None) -> dict[str, Any]:
    me = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory(prefix="kannon-bench-scale-") as ws:
        kubeconfig = str(Path(ws) / "kubeconfig")
        emu = subprocess.Popen([sys.executable, me, "_emulator", kubeconfig], cwd=ws, env=_env(), text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
        assert emu.stdin is not None and emu.stdout is not None
        try:
            if emu.stdout.readline().strip() != "ready":
                raise RuntimeError("the emulator did not start")
            argv = [sys.executable, me, "_master", kubeconfig, shape, str(count), str(parallel), profile_out or ""]
            if spy_out:  # sampled: no cProfile inflation of call-heavy code; --gil: the thread running Python only
                argv = ["py-spy", "record", "--gil", "--threads", "-r", "200", "-f", "raw", "-o", spy_out, "--", *argv]
            proc = subprocess.run(argv, cwd=ws, env=_env(), capture_output=True, text=True, timeout=7200)
            if os.environ.get("KANNON_BENCH_TRACEMALLOC") and proc.returncode == 0:
                print(proc.stderr, file=sys.stderr, flush=True)
            if proc.returncode != 0:
                raise RuntimeError(f"master failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            master = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])  # py-spy prints too
        finally:
            out, _ = emu.communicate("", timeout=600)
        emulator = json.loads(out.strip().splitlines()[-1])
    return {**master, **emulator}


def per_task(run: dict[str, Any], zero: dict[str, Any], count: int, parallel: int, shape: str) -> dict[str, Any]:
    n = run["bullets"]
    pods_cpu = run["pods_cpu_s"] - zero["pods_cpu_s"]
    floor = pods_cpu / (os.cpu_count() or 1)
    req, req0 = run["requests"], zero["requests"]
    return {
        "bench": "k8s_scale", "shape": shape, "bullets": n, "max_parallel": parallel,
        "pack": int(os.environ.get("KANNON_BENCH_PACK") or 0) or "default",
        "wall_s": round(run["wall_s"], 2), "master_cpu_s": round(run["master_cpu_s"], 2),
        "master_cpu_ms_per_task": round(1000 * (run["master_cpu_s"] - zero["master_cpu_s"]) / n, 2),
        "api_requests": req, "api_requests_per_task": round((req["total"] - req0["total"]) / n, 3),
        "maxrss_mb": round(run["maxrss_mb"]), "maxrss_mb_at_n0": round(zero["maxrss_mb"]),
        "rss_peak_at_fraction_of_wall": run["rss_peak_at_fraction_of_wall"], "rss_at_end_mb": run["rss_at_end_mb"],
        "rss_mb_at_fraction_of_wall": run["rss_mb_at_fraction_of_wall"],
        "rss_peak_mb_by_phase": run.get("rss_peak_mb_by_phase"),
        "pods_cpu_s": round(pods_cpu, 2), "warm_pod_cpu_ms_per_task": round(1000 * pods_cpu / n, 1),
        "child_self_cpu_ms_per_task": round(1000 * run["children_self_cpu_s"] / n, 1) if n else None,
        "emulator_cpu_ms_per_task": round(1000 * (run["emulator_cpu_s"] - zero["emulator_cpu_s"]) / n, 2),
        "wall_over_pods_cpu_floor": round(run["wall_s"] / floor, 2) if floor > 0 else None,
        "thread_cpu_ms_per_task": {k: round(1000 * (v - zero["thread_cpu_s"].get(k, 0.0)) / n, 2)
                                   for k, v in sorted(run["thread_cpu_s"].items(), key=lambda kv: -kv[1])},
        "gc_ms_per_task": {k: round(1000 * (v - zero["gc_s"].get(k, 0.0)) / n, 3)
                           for k, v in sorted(run["gc_s"].items())},
        "targets": {"master_cpu_ms_per_task": 5.0, "api_requests_per_task": 2.1, "maxrss_mb_at_10000": 300},
    }  # fmt: skip


def bench_k8s(sizes: list[int], parallels: list[int], shapes: list[str]) -> None:
    for shape in shapes:
        zero = k8s_run(shape, 0, parallels[0])
        emit({"bench": "k8s_constant", "shape": shape, "wall_s": round(zero["wall_s"], 2),
              "master_cpu_s": round(zero["master_cpu_s"], 3), "maxrss_mb": round(zero["maxrss_mb"]),
              "api_requests": zero["requests"], "zygote_cpu_s": round(zero["pods_cpu_s"], 2),
              "emulator_cpu_s": round(zero["emulator_cpu_s"], 2)})  # fmt: skip
        for count in sizes:
            for parallel in parallels:
                emit(per_task(k8s_run(shape, count, parallel), zero, count, parallel, shape))


def spy(count: int, parallel: int, out: str, top: int = 40) -> None:
    """One flat run of ``count`` bullets with the master under py-spy; inclusive CPU shares of its frames."""
    run = k8s_run("flat", count, parallel, spy_out=out)
    inclusive: dict[str, int] = {}
    total = 0
    for line in Path(out).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        total += int(n)
        for frame in set(stack.split(";")):
            inclusive[frame] = inclusive.get(frame, 0) + int(n)
    emit({"bench": "py-spy", "bullets": run["bullets"], "master_cpu_s": round(run["master_cpu_s"], 2),
          "wall_s": round(run["wall_s"], 2), "samples": total, "raw": out})  # fmt: skip
    for frame, samples in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{100 * samples / max(total, 1):5.1f} %  {frame}")


def profile(count: int, parallel: int, out: str, top: int = 30) -> None:
    run = k8s_run("flat", count, parallel, profile_out=out)
    emit({"bench": "profile", "bullets": run["bullets"], "master_cpu_s_profiled": round(run["master_cpu_s"], 2),
          "wall_s": round(run["wall_s"], 2), "threads_profiled": run["threads_profiled"], "stats": out})  # fmt: skip
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(out, stream=buf).sort_stats(key).print_stats(top)
        print(buf.getvalue(), flush=True)


# -- local backend --------------------------------------------------------------------------------------------------
def _local_children(count: int) -> dict[str, Any]:
    """Runs in a fresh interpreter: one local build; master and children CPU after the fork server was reaped."""
    import _dags

    from kannon.backends.local import LocalExecutor
    from kannon.scheduler import Kannon

    os.environ["NOOP_COUNT"] = str(count)
    root = _dags.noop_root()
    self0, kids0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    result = Kannon(executor=LocalExecutor(mode="fork"), max_parallel=2, sys_path=[str(BENCH)]).build(root)
    assert result.ok
    return {
        "master_cpu_s": _cpu(resource.RUSAGE_SELF) - self0,
        "children_cpu_s": _cpu(resource.RUSAGE_CHILDREN) - kids0,
        "children_self_cpu_s": _children_self_cpu_s(result),
    }


def bench_local_whole(count: int, reps: int) -> None:
    target = f"{BENCH / '_dags.py'}:noop_root"
    luigi_script = (f"import sys; sys.path.insert(0, {str(BENCH)!r}); import luigi, _dags; "
                    "sys.exit(0 if luigi.build([_dags.noop_root()], workers=2, local_scheduler=True, "
                    "log_level='WARNING') else 1)")  # fmt: skip
    env = {"NOOP_COUNT": str(count)}
    kannon_s, reuse_s, luigi_s = [], [], []
    for _ in range(reps):  # interleaved: all see the same machine load
        argv = [sys.executable, "-m", "kannon", "build", target, "--workspace", "ws", "--max-parallel", "2"]
        kannon_s.append(bench_local.run_timed(argv, env)[0])
        reuse_s.append(bench_local.run_timed([*argv, "--local-reuse-processes"], env)[0])
        luigi_s.append(bench_local.run_timed([sys.executable, "-c", luigi_script], env)[0])
    k, r, lu = bench_local.summary(kannon_s), bench_local.summary(reuse_s), bench_local.summary(luigi_s)
    emit({"bench": "local_whole_process", "bullets": count, "reps": reps, "kannon_build_cli_max_parallel2_s": k,
          "kannon_build_cli_reuse_processes_s": r, "luigi_script_workers2_s": lu,
          "ratio_median": round(k["median"] / lu["median"], 3),
          "ratio_reuse_median": round(r["median"] / lu["median"], 3),
          "target_ratio": 0.90, "meets_target": k["median"] <= 0.90 * lu["median"],
          "meets_target_with_reuse": r["median"] <= 0.90 * lu["median"]})  # fmt: skip


def bench_child(big: int = 200, small: int = 20) -> None:
    me = str(Path(__file__).resolve())
    runs = {}
    for n in (small, big):
        with tempfile.TemporaryDirectory(prefix="kannon-bench-child-") as ws:
            proc = subprocess.run([sys.executable, me, "_local", str(n)], cwd=ws, env=_env(), capture_output=True,
                                  text=True, timeout=3600)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"local run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        runs[n] = json.loads(proc.stdout.strip().splitlines()[-1])
    d = big - small
    emit({"bench": "local_fork_child", "bullets": [small, big],
          "child_cpu_ms_per_task": round(1000 * (runs[big]["children_cpu_s"] - runs[small]["children_cpu_s"]) / d, 1),
          "child_self_cpu_ms_per_task": round(1000 * runs[big]["children_self_cpu_s"] / big, 1),
          "master_cpu_ms_per_task": round(1000 * (runs[big]["master_cpu_s"] - runs[small]["master_cpu_s"]) / d, 2),
          "target_child_cpu_ms": 50})  # fmt: skip


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "_emulator":
        emulator_main(sys.argv[2])
        return 0
    if len(sys.argv) > 2 and sys.argv[1] == "_master":
        kubeconfig, shape, count, parallel, prof = sys.argv[2:7]
        print(json.dumps(master_main(kubeconfig, shape, int(count), int(parallel), prof or None)))
        return 0
    if len(sys.argv) > 2 and sys.argv[1] == "_local":
        print(json.dumps(_local_children(int(sys.argv[2]))))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100,1000")
    p.add_argument("--long", action="store_true", help="add N = 10,000")
    p.add_argument("--parallel", default="100,500")
    p.add_argument("--shapes", default="flat,lattice")
    p.add_argument("--only", default="k8s,local,child")
    p.add_argument("--local-reps", type=int, default=3)
    p.add_argument("--pack", type=int, default=0,
                   help="K8sJobExecutor(pack=N): bullets per pod (default: the executor's default)")
    p.add_argument("--profile", type=int, default=0, help="profile the master of one flat run of N bullets")
    p.add_argument("--profile-parallel", type=int, default=100)
    p.add_argument("--profile-out", default=str(Path(tempfile.gettempdir()) / "kannon-master.prof"))
    p.add_argument("--py-spy", type=int, default=0, help="sample the master of one flat run of N bullets (py-spy)")
    p.add_argument("--py-spy-out", default=str(Path(tempfile.gettempdir()) / "kannon-master.spy.txt"))
    ns = p.parse_args()
    if ns.pack:
        os.environ["KANNON_BENCH_PACK"] = str(ns.pack)
    sizes = [int(s) for s in ns.sizes.split(",") if s] + ([10000] if ns.long else [])
    only = set(ns.only.split(","))
    bench_local.warm_up()
    emit({"bench": "machine", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
          "python": platform.python_version(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]})  # fmt: skip
    if "k8s" in only:
        bench_k8s(sizes, [int(s) for s in ns.parallel.split(",")], ns.shapes.split(","))
    if "local" in only:
        bench_local_whole(200, ns.local_reps)
    if "child" in only:
        bench_child()
    if ns.profile:
        profile(ns.profile, ns.profile_parallel, ns.profile_out)
    if ns.py_spy:
        spy(ns.py_spy, ns.profile_parallel, ns.py_spy_out)
    emit({"bench": "machine", "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
