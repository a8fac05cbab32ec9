"""LocalExecutor(reuse_processes=True): a fork-server process that ran a bullet cleanly runs the next one.

Each check drives the executor itself, one launch after another, so which process runs what is decided by the
order of the launches, not by timing. What a reused process must not carry from one bullet to the next is what a
fresh one would not have either: environment, sys.path, signal handlers, the earlier bullet's CPU and peak memory.
What makes it unfit for another bullet (a failure, a thread or a process left running) retires it."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from kannon import handoff, storage
from kannon.backends import local
from kannon.backends.base import Finished, Launch, RunInfo
from kannon.backends.local import LocalExecutor
from kannon.forkserver.client import ForkServer
from kannon.hints import Hints
from tests.support.events import Recorder
from tests.support.procs import kannon as run_kannon
from tests.support.procs import processes_in, wait_until
from tests.support.tasks import Probe, Stubborn


class Driver:
    """An executor and its events; ``run(task)`` launches one attempt and waits for its end."""

    def __init__(self, tmp_path: Path, **options: Any) -> None:
        self.tmp_path, self.events, self.count = tmp_path, Recorder(timeout=120), 0
        self.ex = LocalExecutor(mode="fork", **options)
        self.ex.start(RunInfo("reuse", tmp_path / "run"), self.events)
        self.ex.prepare(["tests.support.tasks"])

    def launch(self, task: Any, hints: Hints | None = None) -> str:
        self.count += 1
        key = f"k{self.count}"
        data = handoff.Encoder().spec(task, "reuse", handoff.luigi_config_snapshot())
        spec = self.tmp_path / f"{key}.spec"
        storage.write_bytes(str(spec), data)
        uid = handoff.unique_id(task)
        args = handoff.child_args(str(spec), uid, hashlib.sha256(data).hexdigest())
        self.ex.launch(Launch(key=key, run_id="reuse", task_id=uid, family=type(task).__name__, attempt=1,
                              child_args=args, env={}, hints=hints or Hints(),
                              log_path=self.tmp_path / "run" / f"{key}.log"))  # fmt: skip
        return key

    def run(self, task: Any, hints: Hints | None = None) -> Finished:
        return self.events.wait_finished(self.launch(task, hints))

    def pid(self, key: str) -> int:
        return int(self.events.started(key)[0].where.split()[-1])

    def close(self) -> None:
        self.ex.close()


@pytest.fixture
def driver(tmp_path: Path) -> Any:
    d = Driver(tmp_path, reuse_processes=True)
    yield d
    d.close()


def probe(tmp_path: Path, name: str, leave: str = "") -> Probe:
    return Probe(name=name, leave=leave, flag_dir=str(tmp_path), workspace_directory=str(tmp_path / "ws"))


def test_one_process_runs_bullet_after_bullet_and_each_starts_as_a_fresh_one_would(driver: Driver,
                                                                                   tmp_path: Path) -> None:  # fmt: skip
    first, second, third = probe(tmp_path, "a", "dirty"), probe(tmp_path, "b"), probe(tmp_path, "c")
    for task in (first, second, third):
        assert driver.run(task).exit_code == 0
    pids = {driver.pid(k) for k in ("k1", "k2", "k3")}
    assert len(pids) == 1, pids
    clean = first.output().load()
    for later in (second, third):
        seen = later.output().load()
        assert seen["env"] is None, "an environment variable the earlier bullet set"
        assert seen["path0"] == clean["path0"] != "/kannon-probe-leak", "a sys.path entry the earlier bullet added"
        assert seen["sigusr2_default"], "a signal handler the earlier bullet installed"


def test_without_the_option_every_bullet_gets_a_process_of_its_own(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    try:
        for name in ("a", "b", "c"):
            assert d.run(probe(tmp_path, name)).exit_code == 0
        assert len({d.pid(k) for k in ("k1", "k2", "k3")}) == 3
    finally:
        d.close()


@pytest.mark.parametrize("leave", ["fail", "thread", "process"])
def test_a_process_that_failed_or_left_something_running_is_not_reused(driver: Driver, tmp_path: Path,
                                                                       leave: str) -> None:  # fmt: skip
    first = driver.run(probe(tmp_path, "a", leave))
    assert (first.exit_code == 0) == (leave != "fail"), first
    assert driver.run(probe(tmp_path, "b")).exit_code == 0
    assert driver.pid("k1") != driver.pid("k2")
    if leave == "process":  # retired as a process that exits: what it left in its group ends with it
        leftover = int((tmp_path / "a.leftover").read_text())
        wait_until(lambda: not _alive(leftover), 60, "the process the first bullet left behind to end")


def test_each_bullet_reports_its_own_cpu_and_peak_memory(driver: Driver, tmp_path: Path) -> None:
    busy, idle_after_cpu = driver.run(probe(tmp_path, "cpu", "cpu")), driver.run(probe(tmp_path, "n1"))
    big, idle_after_memory = driver.run(probe(tmp_path, "mem", "memory")), driver.run(probe(tmp_path, "n2"))
    assert len({driver.pid(f"k{i}") for i in range(1, 5)}) == 1
    usage = {name: f.result.usage for name, f in
             [("busy", busy), ("idle1", idle_after_cpu), ("big", big), ("idle2", idle_after_memory)]
             if f.result is not None and f.result.usage is not None}  # fmt: skip
    assert set(usage) == {"busy", "idle1", "big", "idle2"}, usage
    assert usage["busy"].cpu_seconds >= 0.3
    assert usage["idle1"].cpu_seconds < 0.2, "the earlier bullet's CPU counted again"
    assert usage["big"].peak_rss_bytes is not None and usage["idle2"].peak_rss_bytes is not None
    assert usage["big"].peak_rss_bytes - usage["idle2"].peak_rss_bytes > 150 << 20, "the earlier bullet's peak"


def test_a_process_is_retired_after_its_quota_of_bullets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "REUSE_MAX", 2)
    d = Driver(tmp_path, reuse_processes=True)
    try:
        for name in ("a", "b", "c", "d"):
            assert d.run(probe(tmp_path, name)).exit_code == 0
        pids = [d.pid(f"k{i}") for i in range(1, 5)]
    finally:
        d.close()
    assert pids[0] == pids[1] != pids[2] == pids[3], pids


def test_a_bullet_with_a_memory_hint_gets_a_fresh_process(driver: Driver, tmp_path: Path) -> None:
    assert driver.run(probe(tmp_path, "a")).exit_code == 0
    assert driver.run(probe(tmp_path, "b"), Hints(memory="2Gi")).exit_code == 0
    assert driver.pid("k1") != driver.pid("k2")


def test_cancelling_a_bullet_in_a_reused_process_ends_it_after_the_grace_period(tmp_path: Path) -> None:
    d = Driver(tmp_path, reuse_processes=True, kill_grace=2.0)
    try:
        assert d.run(probe(tmp_path, "a")).exit_code == 0
        key = d.launch(Stubborn(name="stubborn", flag_dir=str(tmp_path)))
        wait_until(lambda: (tmp_path / "stubborn.running").exists(), 120, "the stubborn bullet to start")
        assert d.pid(key) == d.pid("k1")
        d.ex.cancel("k1")  # finished long ago: must not reach the process now running k2
        d.ex.cancel(key)
        finished = d.events.wait_finished(key)
    finally:
        d.close()
    assert (tmp_path / "stubborn.sigterm").exists()
    assert finished.exit_code == 128 + signal.SIGKILL, finished
    assert not processes_in(tmp_path)


def test_the_server_signals_a_request_only_while_its_process_runs_it(tmp_path: Path) -> None:
    """The client's signal for a finished request, arriving after the process took the next one, is dropped:
    only the server knows, in order, which request a reused process runs."""
    server = ForkServer.start(parent_death=True)
    try:
        server.sock.settimeout(60)
        assert "ready" in server.recv()
        common = {"op": "run", "mode": "call", "report": True, "reuse": True, "cwd": str(tmp_path), "env": {}}

        def run(rid: str, seconds: float) -> None:
            r, w = os.pipe()
            server.send({**common, "id": rid, "target": f"{__name__}:sleep_for", "args": [str(seconds)]}, fd=w)
            os.close(w)
            os.close(r)

        run("r1", 0)
        first = _messages_until(server, "reported", "r1")
        run("r2", 600)
        second = _messages_until(server, "started", "r2")
        assert first["started"]["pid"] == second["started"]["pid"], (first, second)
        assert first["reported"].get("again") is True
        server.send({"op": "signal", "id": "r1", "signal": int(signal.SIGKILL)})
        server.send({"op": "signal", "id": "r2", "signal": int(signal.SIGTERM)})
        ended = _messages_until(server, "exited", "r2")
        assert ended["exited"]["code"] == -signal.SIGTERM, ended  # the SIGKILL for r1 never reached it
    finally:
        server.close()


def test_the_cli_option_and_its_one_line_refusal_with_spawn(tmp_path: Path) -> None:
    pipeline = tmp_path / "pipe.py"
    pipeline.write_text("from tests.support.tasks import Probe\n\n\ndef root():\n"
                        f"    return Probe(name='cli', workspace_directory={str(tmp_path / 'ws')!r})\n")  # fmt: skip
    ok = run_kannon("build", f"{pipeline}:root", "--local-reuse-processes", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr[-3000:]
    bad = run_kannon("build", f"{pipeline}:root", "--local-reuse-processes", "--local-mode", "spawn", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "kannon: --local-reuse-processes needs --local-mode fork: a spawned interpreter is never reused"]


def _messages_until(server: ForkServer, kind: str, rid: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    while True:
        try:
            msg = server.recv()
        except TimeoutError as e:
            raise AssertionError(f"no {kind} for {rid}; saw {seen}") from e
        assert msg is not None, f"the server ended before {kind} for {rid}"
        for k in ("started", "reported", "exited"):
            if msg.get(k) == rid:
                seen[k] = msg
        if kind in seen:
            return seen


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")



def sleep_for(args: list[str]) -> None:
    """A fork-server "call" target: sleep args[0] seconds."""
    time.sleep(float(args[0]))
