"""The fault suite's machinery: find processes by environment marker in /proc, drive a real ``kannon build`` master
process, pick kill points from its event log, and check the exactly-once ledger (tests/faults/ledger.py).

Shared by the short CI profile (tests/faults/test_*.py) and the long profile (bench/faults_long.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from kannon.testing import KubeEmulator
from tests.faults import ledger as ledger_mod

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
MARKER_ENV = "KANNON_FAULTS_MARKER"

T = TypeVar("T")


# -- waiting on conditions ------------------------------------------------------------------------------------------
def wait_until(predicate: Callable[[], T], timeout: float, message: str = "", interval: float = 0.02) -> T:
    """Poll ``predicate`` until it is truthy (returned) or ``timeout`` passes (AssertionError). For state with no
    change notification (files, /proc); the interval only bounds the reaction time, it is not a wait for an effect."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(message or f"condition not met within {timeout} s")
        time.sleep(interval)


# -- processes --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Proc:
    pid: int
    state: str
    cmdline: str


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # gone meanwhile, or a kernel thread
        return None


def find_processes(markers: Iterable[str], exclude: Iterable[int] = ()) -> list[Proc]:
    """Live (non-zombie) processes whose initial environment contains one of ``markers`` ("NAME=value").

    /proc/PID/environ is the environment a process was exec'd with; a forked child without exec (the local
    backend's zygote and its children) shows its parent's, which is why the master is started with a marker of
    its own: everything forked from it carries it."""
    wanted = [m.encode() for m in markers]
    skip = {os.getpid(), *exclude}
    found: list[Proc] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        env = _read(f"/proc/{entry}/environ")
        if not env:
            continue
        entries = env.split(b"\0")
        if not any(w in entries for w in wanted):
            continue
        stat = _read(f"/proc/{entry}/stat") or b""
        state = stat.rsplit(b")", 1)[-1].split()[0].decode() if b")" in stat else "?"
        if state in ("Z", "X"):
            continue  # dead, waiting to be reaped: no longer runs anything
        cmd = (_read(f"/proc/{entry}/cmdline") or b"").replace(b"\0", b" ").decode(errors="replace").strip()
        found.append(Proc(int(entry), state, cmd[:200]))
    return found


def kill_all(procs: Iterable[Proc]) -> None:
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)


def wait_processes_gone(markers: Sequence[str], timeout: float, exclude: Iterable[int] = ()) -> list[Proc]:
    """Wait until no process carries a marker; returns what is still there after ``timeout`` (empty: all gone)."""
    excluded = tuple(exclude)
    deadline = time.monotonic() + timeout
    while True:
        left = find_processes(markers, excluded)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


# -- the event log -----------------------------------------------------------------------------------------------
class EventTail:
    """Incremental reader of a ``--events`` JSON-lines file (a torn last line is read again next time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        self._offset = 0

    def poll(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        new: list[dict[str, Any]] = []
        end = data.rfind(b"\n") + 1
        for line in data[:end].splitlines():
            if line.strip():
                new.append(json.loads(line))
        self._offset += end
        self.events.extend(new)
        return new

    def count(self, kind: str) -> int:
        return sum(1 for e in self.events if e["kind"] == kind)

    @property
    def run_id(self) -> str | None:
        return self.events[0]["run_id"] if self.events else None


# -- a master process --------------------------------------------------------------------------------------------
class Master:
    """``python -m kannon build TARGET ...`` as a real process (own session), with an event log and a log file."""

    def __init__(self, workdir: Path, target: str, args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 name: str = "master") -> None:  # fmt: skip
        self.workdir = workdir
        self.events_path = workdir / f"{name}.events.jsonl"
        self.log_path = workdir / f"{name}.log"
        self.marker = f"{MARKER_ENV}={uuid.uuid4().hex}"
        full_env = {**os.environ, **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
        full_env[MARKER_ENV] = self.marker.split("=", 1)[1]
        argv = [PY, "-m", "kannon", "build", target, "--events", str(self.events_path), *args]
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(argv, cwd=workdir, env=full_env, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        self.tail = EventTail(self.events_path)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_event(self, accept: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 300) -> bool:
        """Wait until ``count`` events satisfy ``accept``: True, or False when the master exited first."""
        deadline = time.monotonic() + timeout
        while True:
            self.tail.poll()
            if sum(1 for e in self.tail.events if accept(e)) >= count:
                return True
            if self.proc.poll() is not None:
                self.tail.poll()
                return sum(1 for e in self.tail.events if accept(e)) >= count
            if time.monotonic() >= deadline:
                raise AssertionError(f"{count} matching event(s) not seen within {timeout} s; log:\n{self.output()}")
            time.sleep(0.01)  # a file has no change notification: this bounds the reaction time only

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)  # the master process only: what it leaves behind is what is being tested

    def wait(self, timeout: float = 300) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self._log.close()
        self.tail.poll()
        return code

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Test cleanup: nothing of this master may outlive the test."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=60)
        if not self._log.closed:
            self._log.close()
        kill_all(find_processes([self.marker]))


# -- the ledger ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Start:
    label: str
    nonce: str
    existed: bool
    pid: int
    line: int


def read_ledger(path: Path) -> tuple[list[Start], list[tuple[str, str, int]]]:
    starts: list[Start] = []
    dones: list[tuple[str, str, int]] = []
    if not path.exists():
        return starts, dones
    for n, line in enumerate(path.read_text().splitlines()):
        parts = line.split()
        if parts[0] == "start":
            starts.append(Start(parts[1], parts[2], parts[3] == "1", int(parts[4]), n))
        elif parts[0] == "done":
            dones.append((parts[1], parts[2], n))
    return starts, dones


@contextlib.contextmanager
def working_dir(path: Path) -> Iterator[None]:
    """The masters ran in ``path``: gokart's default workspace (./resources) is relative to it."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def snapshot_outputs(tasks: Mapping[str, Any], workdir: Path) -> dict[str, str]:
    """label -> nonce of every task whose output exists now."""
    out: dict[str, str] = {}
    with working_dir(workdir):
        for label, task in tasks.items():
            if task.output().exists():
                out[label] = task.output().load()["nonce"]
    return out


@dataclass
class ExactlyOnce:
    """Accumulates the exactly-once evidence across the generations of a campaign (see tests/faults/ledger.py)."""

    violations: list[str] = field(default_factory=list)
    seen: dict[str, str] = field(default_factory=dict)  # label -> nonce of its output, once seen
    ledger_mark: int = 0  # ledger lines up to here were written before `seen` was last extended

    def observe(self, ledger_path: Path, outputs: Mapping[str, str]) -> None:
        starts, _ = read_ledger(ledger_path)
        for s in starts:
            if s.existed:
                self.violations.append(f"{s.label}: run() started although its output existed (pid {s.pid})")
            if s.line >= self.ledger_mark and s.label in self.seen:
                self.violations.append(f"{s.label}: run() started again after its output was seen (pid {s.pid})")
        for label, nonce in outputs.items():
            if label in self.seen and self.seen[label] != nonce:
                self.violations.append(f"{label}: its output was rewritten (nonce {self.seen[label]} -> {nonce})")
            self.seen.setdefault(label, nonce)
        self.ledger_mark = len(ledger_path.read_text().splitlines()) if ledger_path.exists() else 0
        self.violations = list(dict.fromkeys(self.violations))

    def final(self, ledger_path: Path, outputs: Mapping[str, str], labels: Iterable[str]) -> dict[str, int]:
        starts, dones = read_ledger(ledger_path)
        started = {(s.label, s.nonce) for s in starts}
        done_count = Counter(label for label, _, _ in dones)
        for label in labels:
            if label not in outputs:
                self.violations.append(f"{label}: no output at the end")
            elif (label, outputs[label]) not in started:
                self.violations.append(f"{label}: its output was written by no run() in the ledger")
        for label, n in done_count.items():
            if n > 1:
                self.violations.append(f"{label}: {n} runs committed an output")
        self.violations = list(dict.fromkeys(self.violations))
        interrupted = sum(1 for s in starts if outputs.get(s.label) != s.nonce)
        return {"runs": len(starts), "interrupted": interrupted,
                "tasks_run_more_than_once": len({v.split(":")[0] for v in self.violations})}  # fmt: skip


# -- a kill campaign ----------------------------------------------------------------------------------------------
@dataclass
class KillPoint:
    generation: int
    kind: str
    k: int
    planned: int  # tasks the master planned to run in that generation
    reached: bool = False
    orphans: int = 0


@dataclass
class CampaignResult:
    seed: int
    kills: list[KillPoint]
    generations: int
    final_code: int
    violations: list[str]
    ledger: dict[str, int]
    orphans: int
    adopted: int
    wrong_values: list[str]
    run_id: str | None
    seconds: float

    @property
    def kills_survived(self) -> int:
        return sum(1 for k in self.kills if k.reached)

    def describe(self) -> str:
        points = ", ".join(f"g{k.generation}:{k.kind}#{k.k}/{k.planned}" + ("" if k.reached else "(not reached)")
                           for k in self.kills)  # fmt: skip
        return (f"seed={self.seed} kill points=[{points}] generations={self.generations} "
                f"runs={self.ledger.get('runs')} interrupted={self.ledger.get('interrupted')} adopted={self.adopted} "
                f"orphans={self.orphans} violations={len(self.violations)} {self.seconds:.1f}s")  # fmt: skip


KILL_KINDS = ("started", "started", "launched", "succeeded")


def campaign_seed(fixed: int) -> int:
    """The suite's campaigns draw their kill points from a fixed seed (a CI run never depends on a random draw);
    KANNON_FAULTS_SEED=N replays another campaign's. New kill points are bench/faults_long.py's job."""
    text = os.environ.get("KANNON_FAULTS_SEED")
    return int(text) if text else fixed


def run_campaign(
    workdir: Path,
    kills: int,
    seed: int,
    backend_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    size: int = 100,
    master_every: int = 4,
    nap: float = 0.05,
    after_kill: Callable[[Master], int] | None = None,
    orphan_timeout: float = 10.0,
    log: Callable[[str], None] = print,
) -> CampaignResult:
    """SIGKILL the master at ``kills`` event-chosen points of the DAG of tests/faults/ledger.py, rerunning after
    each, then run to the end. ``after_kill(master)`` checks the backend for leftovers and returns how many it found
    (processes carrying the master's marker are checked here)."""
    t0 = time.monotonic()
    rng = random.Random(seed)
    ledger_path = workdir / "ledger.txt"
    sh = ledger_mod.shape(size, master_every)
    run_env = {**(env or {}), ledger_mod.LEDGER_ENV: str(ledger_path), ledger_mod.NAP_ENV: str(nap),
               ledger_mod.SIZE_ENV: str(size), ledger_mod.MASTER_EVERY_ENV: str(master_every)}  # fmt: skip
    tasks = ledger_mod.build(sh, str(ledger_path), nap)
    check = ExactlyOnce()
    points: list[KillPoint] = []
    orphans = 0
    adopted = 0
    run_id = None
    generation = 0
    final_code = -1
    while True:
        generation += 1
        kills_left = kills - len(points)
        master = Master(workdir, "tests.faults.ledger:dag", backend_args, run_env, name=f"gen{generation}")
        try:
            # the plan is written before anything is launched: the kill point is drawn from what this master plans
            master.wait_event(lambda e: e["kind"] not in ("run_started", "planned", "skipped_complete"))
            planned = master.tail.count("planned")
            run_id = run_id or master.tail.run_id
            if kills_left > 0 and planned > 0:
                kind = rng.choice(KILL_KINDS)
                k = rng.randint(1, max(1, planned // (kills_left + 1)))
                point = KillPoint(generation, kind, k, planned)
                points.append(point)
                point.reached = master.wait_event(lambda e, kind=kind: e["kind"] == kind, k)  # type: ignore[misc]
                if point.reached:
                    master.signal(signal.SIGKILL)
                master.wait()
                left = wait_processes_gone([master.marker], orphan_timeout)
                point.orphans = len(left)
                if after_kill is not None:
                    point.orphans += after_kill(master)
                orphans += point.orphans
                kill_all(left)
                log(f"  generation {generation}: killed after {kind} #{k} of {planned} planned tasks "
                    f"(reached={point.reached}, orphans={point.orphans})")  # fmt: skip
            else:
                final_code = master.wait()
                left = wait_processes_gone([master.marker], orphan_timeout)
                orphans += len(left)
                kill_all(left)
                log(f"  generation {generation}: ran to the end, exit {final_code}, orphans={len(left)}")
                if final_code != 0:
                    raise AssertionError(f"the final master exited {final_code}:\n{master.output()[-5000:]}")
            starts = [e for e in master.tail.events if e["kind"] == "started"]
            adopted += sum(1 for e in starts if "adopted)" in e.get("where", ""))  # "(adopted)", "(id, adopted)"
        finally:
            master.stop()
        check.observe(ledger_path, snapshot_outputs(tasks, workdir))
        if final_code != -1:
            break
        if generation > kills + 5:
            raise AssertionError("the campaign does not converge")
    outputs = snapshot_outputs(tasks, workdir)
    figures = check.final(ledger_path, outputs, sh.parents)
    expected = sh.expected_values()
    with working_dir(workdir):
        wrong = [label for label, task in tasks.items()
                 if task.output().exists() and task.output().load()["value"] != expected[label]]  # fmt: skip
    return CampaignResult(seed, points, generation, final_code, check.violations, figures, orphans, adopted, wrong,
                          run_id, time.monotonic() - t0)  # fmt: skip


# -- leftovers per backend ----------------------------------------------------------------------------------------
def local_leftovers(master: Master) -> int:
    """Spawned children carry the run id in their environment (forked ones carry the master's marker)."""
    run_id = master.tail.run_id
    if run_id is None:
        return 0
    return len(wait_processes_gone([f"KANNON_RUN_ID={run_id}"], 10.0))


def job_template(workdir: Path) -> Path:
    path = workdir / "job.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{
            "name": "main", "image": "kannon-test:latest", "workingDir": str(workdir),
            "env": [{"name": "PYTHONPATH", "value": str(REPO)}]}]}}},
    }))  # fmt: skip
    return path


def k8s_args(kube: KubeEmulator, workdir: Path) -> tuple[list[str], dict[str, str]]:
    kubeconfig = kube.write_kubeconfig(workdir / "kubeconfig")
    args = ["--backend", "kubernetes", "--job-template", str(job_template(workdir)), "--k8s-python", PY,
            "--max-parallel", "6"]  # fmt: skip
    return args, {"KUBECONFIG": str(kubeconfig)}


def run_campaign_with_leftovers(
    workdir: Path,
    kills: int,
    seed: int,
    backend_args: Sequence[str],
    leftovers: Callable[[str], list[str]],
    env: Mapping[str, str] | None = None,
    size: int = 100,
    log: Callable[[str], None] = print,
) -> tuple[CampaignResult, list[str]]:
    """A campaign on a backend whose children outlive a killed master (Jobs, containers): half the steps in the
    master, since every child is a fresh interpreter (~1 s of CPU) on 2 cores; then ``leftovers(run_id)``, what the
    backend still holds of the run once it is over (must be nothing), counted as orphans."""
    result = run_campaign(workdir, kills, seed, backend_args, env, size=size, master_every=2, nap=0.3, log=log)
    left = leftovers(result.run_id) if result.run_id else []
    result.orphans += len(left)
    return result, left


def docker_args(image: str) -> list[str]:
    """A master on the Docker backend: the test image with this venv and checkout mounted (tests/e2e/docker)."""
    from tests.e2e.docker.support import python_volumes

    args = ["--backend", "docker", "--image", image, "--docker-python", PY, "--max-parallel", "4",
            "--env", f"PYTHONPATH={REPO}"]  # fmt: skip
    for volume in python_volumes():
        args += ["--volume", volume]
    return args


def docker_leftovers(engine: Any, run_id: str, timeout: float = 30.0) -> list[str]:
    """Containers of the run still on the engine once it is over: running ones a killed master left are adopted by
    the next one and every finished one is removed, so none may remain."""

    def containers() -> list[str]:
        found = engine.containers.list(all=True, filters={"label": f"kannon.io/run-id={run_id}"})
        return [f"{c.name} ({c.status})" for c in found]

    deadline = time.monotonic() + timeout
    while (left := containers()) and time.monotonic() < deadline:
        time.sleep(0.2)  # removal is the engine's asynchronous work after the run's last report
    return left


def k8s_leftovers(kube: KubeEmulator, run_id: str) -> list[str]:
    """Jobs not finished, pods not ended, pod processes still alive — once the run is over, all must be none."""
    left = []
    for name, job in kube.jobs().items():
        conditions = {c["type"] for c in job.get("status", {}).get("conditions", []) if c.get("status") == "True"}
        if not conditions & {"Complete", "Failed"}:
            left.append(f"job {name} (not finished)")
    for name, pod in kube.pods().items():
        if pod["status"].get("phase") in ("Pending", "Running"):
            left.append(f"pod {name} ({pod['status'].get('phase')})")
    left += [f"process {p.pid} {p.cmdline}" for p in wait_processes_gone([f"KANNON_RUN_ID={run_id}"], 10.0)]
    return left
