"""DockerExecutor against a real engine: containers, limits, logs, failures, cancellation, re-attach after a crash.

These drive the executor directly with Launch objects whose child is plain Python (``ScriptExecutor``), so that
each test checks one piece of the container plumbing; the pipeline-level tests are in test_docker_build.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from kannon.backends.base import BackendError, Finished, RunInfo
from kannon.backends.docker import LABEL_ATTEMPT, LABEL_FAMILY, LABEL_RUN, LABEL_TASK, DockerExecutor
from kannon.hints import Hints
from tests.e2e.docker.support import REPO, ScriptExecutor, python_volumes, script_launch
from tests.support.events import Recorder

pytestmark = pytest.mark.docker

SLEEPER = "import time; print('up', flush=True); time.sleep(600)"


def executor(image: str, tmp_path: Path, **kw: Any) -> ScriptExecutor:
    kw.setdefault("volumes", python_volumes())
    kw.setdefault("python", sys.executable)
    return ScriptExecutor(image, working_dir=tmp_path, **kw)


def start(ex: DockerExecutor, run_id: str, tmp_path: Path, follow_logs: bool = False) -> Recorder:
    rec = Recorder()
    ex.start(RunInfo(run_id, tmp_path / "run", follow_logs), rec)
    return rec


def run_containers(engine: Any, run_id: str) -> list[Any]:
    return list(engine.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"}))


def test_runs_keeps_log_streams_lines_and_removes_container(engine: Any, image: str, run_id: str,
                                                            tmp_path: Path) -> None:  # fmt: skip
    ex = executor(image, tmp_path, environment={"FROM_EXECUTOR": "e"})
    rec = start(ex, run_id, tmp_path, follow_logs=True)
    ex.prepare([])
    code = textwrap.dedent("""
        import os, sys
        print("cwd", os.getcwd())
        print("env", os.environ["FROM_EXECUTOR"], os.environ["FROM_CORE"], os.environ["FROM_HINTS"])
        print("uid", os.getuid(), os.getgid())
        print("to stderr", file=sys.stderr)
        os.makedirs("resources", exist_ok=True)
        open("resources/out.txt", "w").write("written in the container")
    """)
    # Launch.env is the core's one merge (Hints.env < KANNON_*): the backend adds only its own and the run's secrets
    launch = script_launch(run_id, tmp_path, 1, code, Hints(env={"FROM_HINTS": "h"}),
                           env={"FROM_CORE": "c", "FROM_HINTS": "h"})  # fmt: skip
    ex.launch(launch)
    fin = rec.wait_finished(launch.key)
    assert fin.ok, fin
    assert rec.started(launch.key)[0].where.startswith("container kannon-")
    stdout = [f"cwd {tmp_path}", "env e c h", f"uid {os.getuid()} {os.getgid()}"]
    # stdout keeps its order; stderr is another pipe, so where its line falls between them is not fixed
    for lines in (rec.lines(launch.key), launch.log_path.read_text().splitlines(), list(fin.log_tail)):
        assert sorted(lines) == sorted([*stdout, "to stderr"])
        assert [line for line in lines if line != "to stderr"] == stdout
    # relative paths resolve in the master's working directory, and the file is the master user's
    out = tmp_path / "resources" / "out.txt"
    assert out.read_text() == "written in the container"
    assert (out.stat().st_uid, out.stat().st_gid) == (os.getuid(), os.getgid())
    assert run_containers(engine, run_id) == []
    ex.close()


def test_user_override_owns_files_on_bind_mounts(engine: Any, image: str, run_id: str, tmp_path: Path) -> None:
    tmp_path.chmod(0o711)  # pytest makes it owner-only; the other uid must traverse it
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    ex = executor(image, tmp_path, user="12345:23456")
    rec = start(ex, run_id, tmp_path)
    launch = script_launch(run_id, tmp_path, 1, f"open({str(shared / 'f')!r}, 'w').write('x')")
    ex.launch(launch)
    assert rec.wait_finished(launch.key).ok
    st = (shared / "f").stat()
    assert (st.st_uid, st.st_gid) == (12345, 23456)
    ex.close()


def test_nonzero_exit_is_classified_with_log_tail(engine: Any, image: str, run_id: str, tmp_path: Path) -> None:
    ex = executor(image, tmp_path)
    rec = start(ex, run_id, tmp_path)
    code = "import sys; print('working'); print('kannon-child: the task raised ValueError: bad', file=sys.stderr)" \
           "; sys.exit(6)"  # fmt: skip
    launch = script_launch(run_id, tmp_path, 1, code)
    ex.launch(launch)
    fin = rec.wait_finished(launch.key)
    assert (fin.exit_code, fin.failure_class) == (6, "TaskFailed")
    assert fin.reason == "the task raised ValueError: bad"
    # the tail is shaped as on every backend: the task's own output, not the line that repeats the reason
    assert "working" in fin.log_tail and not any(line.startswith("kannon-child:") for line in fin.log_tail)
    assert "kannon-child: the task raised ValueError: bad" in launch.log_path.read_text()  # the full log keeps it
    assert run_containers(engine, run_id) == []
    ex.close()


def test_oom_kill_under_memory_limit(engine: Any, image: str, run_id: str, tmp_path: Path) -> None:
    ex = executor(image, tmp_path)
    rec = start(ex, run_id, tmp_path)
    code = "print('allocating', flush=True); block = bytearray(512 * 1024 * 1024); print('survived')"
    launch = script_launch(run_id, tmp_path, 1, code, Hints(memory="48Mi"))
    ex.launch(launch)
    fin = rec.wait_finished(launch.key)
    assert (fin.exit_code, fin.failure_class) == (137, "OOMKilled"), fin
    assert "48Mi" in (fin.reason or "") and "raise `memory`" in (fin.reason or "")
    assert fin.log_tail == ("allocating",)
    assert run_containers(engine, run_id) == []
    ex.close()


def test_resources_and_labels_visible_on_container(engine: Any, image: str, run_id: str, tmp_path: Path) -> None:
    ex = executor(image, tmp_path)
    rec = start(ex, run_id, tmp_path)
    launch = script_launch(run_id, tmp_path, 7, SLEEPER, Hints(cpu="500m", memory="64Mi"), attempt=2)
    ex.launch(launch)
    rec.wait_started(launch.key)
    (c,) = run_containers(engine, run_id)
    host, config = c.attrs["HostConfig"], c.attrs["Config"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == host["MemorySwap"] == 64 * 2**20
    assert host["Init"] is True
    assert config["User"] == f"{os.getuid()}:{os.getgid()}"
    assert config["WorkingDir"] == str(tmp_path)
    assert config["Labels"][LABEL_TASK] == launch.task_id
    assert config["Labels"][LABEL_ATTEMPT] == "2"
    assert config["Labels"][LABEL_FAMILY] == "Script7"
    mounts = {m["Destination"]: m for m in c.attrs["Mounts"]}
    assert mounts[str(tmp_path)]["Source"] == str(tmp_path) and mounts[str(tmp_path)]["RW"] is True
    assert mounts[sys.prefix]["RW"] is False
    ex.cancel(launch.key)
    fin = rec.wait_finished(launch.key)
    assert fin.failure_class == "Cancelled"
    assert run_containers(engine, run_id) == []
    ex.close()


def test_cancel_all_stops_and_removes_every_container(engine: Any, image: str, run_id: str, tmp_path: Path) -> None:
    ex = executor(image, tmp_path, stop_timeout=30)  # SIGTERM must do it: init forwards it to the child
    rec = start(ex, run_id, tmp_path, follow_logs=True)
    launches = [script_launch(run_id, tmp_path, n, SLEEPER) for n in range(3)]
    for launch in launches:
        ex.launch(launch)
    for launch in launches:
        # Running its code, so init has long set up signal forwarding. (A SIGTERM in the first instant of a
        # container is dropped by the kernel for PID 1 without a handler; the engine then SIGKILLs after the grace.)
        rec.wait_for(lambda key=launch.key: rec.lines(key) == ["up"])
    assert len(run_containers(engine, run_id)) == 3
    assert ex.cancel_all(timeout=120) == []
    assert run_containers(engine, run_id) == []
    for launch in launches:
        (fin,) = rec.finished(launch.key)  # exactly one Finished per launch
        assert fin.failure_class == "Cancelled"
        assert fin.exit_code == 128 + signal.SIGTERM  # stopped by SIGTERM within the grace, not killed
    ex.close()


def test_close_stops_what_the_core_left_running(engine: Any, image: str, run_id: str, tmp_path: Path) -> None:
    ex = executor(image, tmp_path)
    rec = start(ex, run_id, tmp_path)
    launch = script_launch(run_id, tmp_path, 1, SLEEPER)
    ex.launch(launch)
    rec.wait_started(launch.key)
    ex.close()
    assert [f.failure_class for f in rec.finished(launch.key)] == ["Cancelled"]
    assert run_containers(engine, run_id) == []


def test_missing_image_is_a_clear_error_before_launching(engine: Any, image: str, run_id: str,
                                                         tmp_path: Path) -> None:  # fmt: skip
    ex = executor("kannon-no-such-image:never", tmp_path)
    start(ex, run_id, tmp_path)
    with pytest.raises(BackendError) as err:
        ex.prepare([])
    message = str(err.value)
    assert "kannon-no-such-image:never" in message and "not present" in message
    assert "docker build -t kannon-no-such-image:never" in message and "docker pull" in message
    # a per-task image is checked at plan time
    good = executor(image, tmp_path)
    (problem,) = good.validate("Train", Hints(image="kannon-no-such-image:never"))
    assert "docker pull kannon-no-such-image:never" in problem
    assert good.validate("Train", Hints(image=image, cpu="1")) == []
    # and a launch with a missing image raises instead of starting anything
    with pytest.raises(BackendError, match="not present"):
        ex.launch(script_launch(run_id, tmp_path, 1, "print(1)"))
    assert run_containers(engine, run_id) == []
    good.close()
    ex.close()


def test_validate_rejects_more_cpus_than_the_engine_has(engine: Any, image: str, tmp_path: Path) -> None:
    ex = executor(image, tmp_path)
    ncpu = engine.info()["NCPU"]
    (problem,) = ex.validate("Train", Hints(cpu=ncpu + 1))
    assert f"{ncpu} CPU(s)" in problem
    ex.close()


@pytest.mark.parametrize("init", [True, False])
def test_unstartable_command_is_reported(engine: Any, image: str, run_id: str, tmp_path: Path, init: bool) -> None:
    # With an init process the container starts and init fails to exec; without one the engine refuses to start.
    ex = executor(image, tmp_path, python="/no/such/python", init=init)
    rec = start(ex, run_id, tmp_path)
    launch = script_launch(run_id, tmp_path, 1, "print(1)")
    ex.launch(launch)
    fin = rec.wait_finished(launch.key)
    assert fin.failure_class == "ContainerStart", fin
    assert "/no/such/python" in (fin.reason or "") and "python=" in (fin.reason or "")
    assert run_containers(engine, run_id) == []
    ex.close()


def test_engine_unreachable_names_docker_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = tmp_path / "dead.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{dead}")
    ex = DockerExecutor("any:1")
    with pytest.raises(BackendError) as err:
        ex.start(RunInfo("r", tmp_path / "run"), Recorder())
    message = str(err.value)
    assert "DOCKER_HOST" in message and str(dead) in message and "cannot reach the Docker engine" in message


# -- re-attach after the master was SIGKILLed ----------------------------------------------------------------------
MASTER = textwrap.dedent("""
    # A master that launches three containers, reports them, then waits to be SIGKILLed (no cleanup runs).
    import json, sys
    from pathlib import Path
    from kannon.backends.base import RunInfo
    from kannon.hints import Hints
    from tests.e2e.docker.support import ScriptExecutor, script_launch
    from tests.support.events import Recorder

    args = json.loads(sys.argv[1])
    tmp = Path(args["tmp"])
    ex = ScriptExecutor(args["image"], volumes=args["volumes"], python=args["python"], working_dir=tmp)
    rec = Recorder()
    ex.start(RunInfo(args["run_id"], tmp / "run"), rec)
    for n, code in enumerate(args["codes"]):
        launch = script_launch(args["run_id"], tmp, n, code, Hints(memory="64Mi"))
        ex.launch(launch)
        rec.wait_started(launch.key)
    print("ready", flush=True)
    sys.stdin.read()
""")


def waiter(flag: Path, before: str, after: str) -> str:
    return (f"import os, time\nprint({before!r}, flush=True)\n"
            f"while not os.path.exists({str(flag)!r}): time.sleep(0.05)\nprint({after!r})")  # fmt: skip


def test_rerun_after_master_sigkill_adopts_running_and_removes_stale(engine: Any, image: str, run_id: str,
                                                                     tmp_path: Path) -> None:  # fmt: skip
    release = [tmp_path / f"release{n}" for n in range(3)]
    codes = [
        waiter(release[0], "task 0 before the crash", "task 0 done"),  # still running at the rerun: adopted
        waiter(release[1], "task 1", "task 1 ended while no master ran"),  # ended before the rerun: removed
        waiter(release[2], "task 2", "never"),  # running, but the rerun does not need it: removed at close
    ]
    args = {"tmp": str(tmp_path), "image": image, "volumes": python_volumes(), "python": sys.executable,
            "run_id": run_id, "codes": codes}  # fmt: skip
    master = subprocess.Popen([sys.executable, "-c", MASTER, json.dumps(args)], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert master.stdout is not None
        assert master.stdout.readline() == "ready\n"
    finally:
        master.kill()  # SIGKILL: the old master cleans nothing up
        master.wait()
    by_task = {c.labels[LABEL_TASK]: c for c in run_containers(engine, run_id)}
    assert len(by_task) == 3
    release[1].touch()
    engine.containers.get(by_task[f"{1:032x}"].id).wait()  # it ends with no master watching

    ex = executor(image, tmp_path)
    rec = start(ex, run_id, tmp_path)  # same run id: finds the previous master's containers
    remaining = {c.labels[LABEL_TASK] for c in run_containers(engine, run_id)}
    assert remaining == {f"{0:032x}", f"{2:032x}"}  # the ended one was removed at start

    again = script_launch(run_id, tmp_path, 0, codes[0], Hints(memory="64Mi"))  # same task, same command
    ex.launch(again)
    started = rec.wait_started(again.key)
    assert "adopted" in started.where and by_task[f"{0:032x}"].id[:12] in started.where
    assert len(run_containers(engine, run_id)) == 2  # nothing new was created for it
    release[0].touch()
    fin = rec.wait_finished(again.key)
    assert fin.ok, fin
    # its whole output, from before the crash on, is in the new attempt's log
    assert again.log_path.read_text().splitlines() == ["task 0 before the crash", "task 0 done"]
    ex.close()  # the unclaimed running container of task 2 goes with the run
    assert run_containers(engine, run_id) == []


def test_adoption_refuses_a_container_running_other_limits(engine: Any, image: str, run_id: str,
                                                           tmp_path: Path) -> None:  # fmt: skip
    flag = tmp_path / "release"
    code = waiter(flag, "old", "done")
    old = executor(image, tmp_path)
    rec_old = start(old, run_id, tmp_path)
    first = script_launch(run_id, tmp_path, 0, code, Hints(memory="64Mi"))
    old.launch(first)
    rec_old.wait_started(first.key)
    (old_container,) = run_containers(engine, run_id)

    new = executor(image, tmp_path)  # a second master while the first one's container runs
    rec = start(new, run_id, tmp_path)
    raised = script_launch(run_id, tmp_path, 0, code, Hints(memory="96Mi"))  # the user raised the memory
    new.launch(raised)
    started = rec.wait_started(raised.key)
    assert "adopted" not in started.where
    (c,) = run_containers(engine, run_id)
    assert c.id != old_container.id and c.attrs["HostConfig"]["Memory"] == 96 * 2**20
    flag.touch()
    assert rec.wait_finished(raised.key).ok
    rec_old.wait_finished(first.key)  # the old master sees its container go (stopped and replaced)
    assert run_containers(engine, run_id) == []
    new.close()
    old.close()


def test_finished_exactly_once_when_cancelled_right_after_launch(engine: Any, image: str, run_id: str,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    ex = executor(image, tmp_path)
    rec = start(ex, run_id, tmp_path)
    launches = [script_launch(run_id, tmp_path, n, SLEEPER) for n in range(3)]
    for launch in launches:
        ex.launch(launch)
        ex.cancel(launch.key)  # before, while or after the container is created and started
    assert ex.cancel_all(timeout=120) == []
    for launch in launches:
        fins: list[Finished] = rec.finished(launch.key)
        assert len(fins) == 1 and fins[0].failure_class == "Cancelled", fins
    assert run_containers(engine, run_id) == []
    ex.close()


def test_a_child_that_ignores_sigterm_is_sigkilled_after_the_grace_period(engine: Any, image: str, run_id: str,
                                                                          tmp_path: Path) -> None:  # fmt: skip
    grace = 2
    ex = executor(image, tmp_path, stop_timeout=grace)
    rec = start(ex, run_id, tmp_path, follow_logs=True)
    flag = tmp_path / "got-sigterm"
    code = textwrap.dedent(f"""
        import pathlib, signal, time
        signal.signal(signal.SIGTERM, lambda *_: pathlib.Path({str(flag)!r}).touch())  # noted, then ignored
        print("up", flush=True)
        while True:
            time.sleep(1)
    """)
    launch = script_launch(run_id, tmp_path, 1, code)
    try:
        ex.launch(launch)
        rec.wait_for(lambda: rec.lines(launch.key) == ["up"])  # the handler is in place (and init forwards)
        cancelled = time.monotonic()
        ex.cancel(launch.key)
        fin = rec.wait_finished(launch.key)
        took = time.monotonic() - cancelled
    finally:
        ex.close()
    assert flag.exists(), "no SIGTERM reached the child before the SIGKILL"
    assert fin.failure_class == "Cancelled" and fin.exit_code == 128 + signal.SIGKILL, fin
    assert took >= grace, f"killed {took:.2f} s after the SIGTERM, before the {grace} s grace period ended"
    assert run_containers(engine, run_id) == []


def test_without_an_init_python_as_pid_1_ignores_sigterm_and_the_grace_ends_in_sigkill(
    engine: Any, image: str, run_id: str, tmp_path: Path
) -> None:
    """docs/docker.md: with init=False the interpreter is PID 1, which the kernel spares a SIGTERM it has no
    handler for; only the SIGKILL after stop_timeout ends it."""
    grace = 2
    ex = executor(image, tmp_path, stop_timeout=grace, init=False)
    rec = start(ex, run_id, tmp_path, follow_logs=True)
    launch = script_launch(run_id, tmp_path, 1, SLEEPER)
    try:
        ex.launch(launch)
        rec.wait_for(lambda: rec.lines(launch.key) == ["up"])
        cancelled = time.monotonic()
        ex.cancel(launch.key)
        fin = rec.wait_finished(launch.key)
        took = time.monotonic() - cancelled
    finally:
        ex.close()
    assert fin.failure_class == "Cancelled" and fin.exit_code == 128 + signal.SIGKILL, fin
    assert took >= grace, f"ended {took:.2f} s after the SIGTERM: something other than the SIGKILL ended it"
    assert run_containers(engine, run_id) == []
