"""The local backend's fork server: pre-forked spares, the child's early exit report, and what both must not
change — exit codes, logs, cleanup. Real processes and signals."""

from __future__ import annotations

import hashlib
import os
import queue
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import kannon
from kannon import handoff, storage
from kannon.backends.base import Finished, Launch, RunInfo, Started
from kannon.backends.local import LocalExecutor
from kannon.hints import Hints
from tests.support.procs import children_of, processes_in, wait_until
from tests.support.tasks import Bullet, Join

MODULE = """
    import os, subprocess, sys
    import luigi
    import kannon

    class Detaching(kannon.TaskOnBullet):
        # leaves a grandchild behind that holds the task's output pipe open
        name = luigi.Parameter()

        def run(self):
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
            print("spawned a grandchild", flush=True)
            self.dump(self.name)

    class WhoAmI(kannon.TaskOnBullet):
        # where the child process came from: its parent and its command line
        name = luigi.Parameter()

        def run(self):
            with open("/proc/self/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\\0", b" ").decode()
            self.dump({"pid": os.getpid(), "ppid": os.getppid(), "cmdline": cmdline,
                       "warmed": "kannon.childwarm" in sys.modules})

    class HardExit(kannon.TaskOnBullet):
        # ends its process without returning to kannon: no early report, only the reaped status
        code = luigi.IntParameter()

        def run(self):
            print("about to exit hard", flush=True)
            os._exit(self.code)
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "fs_tasks.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


class RecordingExecutor(LocalExecutor):
    """Remembers the fork server's pid (None without one), read once it is started."""

    zygote_pid: int | None = None

    def start(self, run: RunInfo, report: Any) -> None:
        super().start(run, report)
        self.zygote_pid = self._forkserver.pid if self._forkserver is not None else None


@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_a_fork_mode_child_is_forked_by_the_fork_server_a_spawn_mode_child_is_a_new_interpreter(
    workdir: Path, mode: str
) -> None:
    import fs_tasks

    # the child can tell the fork server ran kannon.childwarm only if this process (the master) never imported it
    assert "kannon.childwarm" not in sys.modules
    ex = RecordingExecutor(mode=mode)  # type: ignore[arg-type]
    task = fs_tasks.WhoAmI(name=mode)
    assert kannon.Kannon(executor=ex, sys_path=[str(workdir)]).build(task).ok
    child = task.output().load()
    assert child["pid"] != os.getpid()
    if mode == "fork":
        assert ex.zygote_pid is not None and ex.zygote_pid != os.getpid()
        assert child["ppid"] == ex.zygote_pid, "the child's parent is not the fork server"
        assert "run-task" not in child["cmdline"], "the child was exec'd, not forked from a warm process"
        assert child["warmed"], "the fork server did not run kannon.childwarm.warm_up"
    else:
        assert ex.zygote_pid is None
        assert child["ppid"] == os.getpid() and "-m kannon run-task" in child["cmdline"]
        assert not child["warmed"]


def test_many_parallel_bullets_each_log_only_their_own_output_and_nothing_is_left(workdir: Path) -> None:
    tasks = [Bullet(name=f"b{i}", marker=f"MARK-{i}-END") for i in range(12)]
    result = kannon.Kannon(executor=LocalExecutor(), max_parallel=4).build(Join(parents=tasks))
    assert result.ok
    logs = list((Path(result.run_dir or "") / "logs" / result.invocation_id).glob("Bullet-*.log"))
    assert len(logs) == 12
    for log in logs:
        marks = [line for line in log.read_text().splitlines() if line.startswith("MARK-")]
        assert len(marks) == 1, (log.name, marks)  # a pipe shared by mistake would mix tasks' output
    assert not processes_in(workdir), "spares and the fork server must be gone when build() returns"


def test_a_grandchild_holding_the_output_pipe_neither_hangs_the_build_nor_survives_it(workdir: Path) -> None:
    import fs_tasks  # type: ignore[import-not-found]

    result = kannon.Kannon(executor=LocalExecutor(), sys_path=[str(workdir)]).build(fs_tasks.Detaching(name="d"))
    assert result.ok
    (record,) = result.tasks.values()
    assert record.attempts[-1].exit_code == 0
    assert "spawned a grandchild" in "\n".join(record.attempts[-1].log_tail)
    wait_until(lambda: not processes_in(workdir), 10, "the grandchild to be killed with its task's group")


@pytest.mark.parametrize("code", [0, 42])
def test_a_process_that_exits_on_its_own_reports_its_real_status(workdir: Path, code: int) -> None:
    import fs_tasks

    task = fs_tasks.HardExit(code=code)
    with pytest.raises(kannon.KannonBuildError) as e:
        kannon.Kannon(executor=LocalExecutor(), sys_path=[str(workdir)]).build(task)
    attempt = e.value.result.failed[0].attempts[-1]
    # exit 0 without output is "output missing" in the master's own check; any other code is the task's
    assert attempt.exit_code == code
    assert "about to exit hard" in "\n".join(attempt.log_tail)


def test_a_spare_killed_while_waiting_is_replaced(workdir: Path) -> None:
    task = Bullet(name="after-spares-died")
    data = handoff.Encoder().spec(task, "fs-run", handoff.luigi_config_snapshot())
    spec = workdir / "spec.json"
    storage.write_bytes(str(spec), data)
    uid = handoff.unique_id(task)
    launch = Launch(
        key="k1", run_id="fs-run", task_id=uid, family="Bullet", attempt=1,
        child_args=handoff.child_args(str(spec), uid, hashlib.sha256(data).hexdigest()), env={}, hints=Hints(),
        log_path=workdir / "run" / "k1.log",
    )  # fmt: skip
    events: queue.SimpleQueue[object] = queue.SimpleQueue()
    ex = LocalExecutor()
    ex.start(RunInfo("fs-run", workdir / "run"), events.put)
    try:
        ex.prepare([type(task).__module__])
        zygote = ex._forkserver
        assert zygote is not None
        spares = wait_until(lambda: len(children_of(zygote.pid)) >= 2 and children_of(zygote.pid), 30,
                            "the fork server to fork its spares")  # fmt: skip
        # Kill them while the fork server cannot notice, and queue the request before it can: it may hand the
        # task to a dead spare (or notice the deaths first); either way the task must not pay for it.
        os.kill(zygote.pid, signal.SIGSTOP)
        try:
            for pid in spares:
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not set(spares) & set(children_of(zygote.pid)), 10, "the spares to die")
            ex.launch(launch)
        finally:
            os.kill(zygote.pid, signal.SIGCONT)
        got: list[object] = []
        while not any(isinstance(e, Finished) for e in got):
            got.append(events.get(timeout=60))
        started = [e for e in got if isinstance(e, Started)]
        finished = [e for e in got if isinstance(e, Finished)]
        assert len(started) == 1 and started[0].where not in {f"pid {p}" for p in spares}
        assert len(finished) == 1 and finished[0].ok, finished
    finally:
        ex.close()
    assert task.complete()


def test_with_other_threads_running_the_fork_server_is_a_fresh_interpreter_and_works_the_same(workdir: Path) -> None:
    import threading

    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)  # forking now would be unsafe: kannon must not
    other.start()
    try:
        ex = LocalExecutor()
        tasks = [Bullet(name=f"t{i}", marker=f"MARK-{i}") for i in range(4)]
        result = kannon.Kannon(executor=ex, max_parallel=2).build(Join(parents=tasks))
    finally:
        stop.set()
        other.join()
    assert result.ok
    assert not processes_in(workdir)
