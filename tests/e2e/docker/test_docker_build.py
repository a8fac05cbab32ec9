"""Whole pipelines on the Docker backend: through ``Kannon(executor=DockerExecutor(...))`` and through the CLI,
including cancellation by SIGTERM and re-attach after the master was SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kannon.backends.docker import LABEL_FAMILY, LABEL_MANAGED, LABEL_RUN, DockerExecutor
from kannon.cli import load_target
from kannon.result import KannonBuildError, Status
from kannon.scheduler import Kannon
from tests.e2e.docker.support import REPO, python_volumes

pytestmark = pytest.mark.docker

HERE = Path(__file__).resolve().parent
TASKS = HERE / "dockertasks.py"


def run_containers(engine: Any, run_id: str) -> list[Any]:
    return list(engine.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"}))


def test_quickstart_dag_on_docker(engine: Any, image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the workspace ./resources is relative: the containers must resolve it here too
    monkeypatch.setenv("QUICKSTART_BULLET_SECONDS", "0.1")
    root, extra = load_target(f"{REPO}/examples/quickstart/pipeline.py:root")
    executor = DockerExecutor(image, volumes=python_volumes())
    result = Kannon(executor=executor, sys_path=extra, env_to_inherit=["QUICKSTART_BULLET_SECONDS"]).build(root)
    assert result.ok and result.backend == "docker"
    bullets = [r for r in result.tasks.values() if r.family in ("TaskC", "TaskD", "TaskE")]
    assert len(bullets) == 9
    for rec in bullets:
        assert rec.status is Status.SUCCEEDED
        assert rec.last is not None and (rec.last.where or "").startswith("container kannon-")
    assert root.output().load() == "G(F(E0(D0(C0(B(A(a))))), E1(D1(C1(B(A(a))))), E2(D2(C2(B(A(a)))))))"
    # the children wrote into the master's workspace as the master's user
    resources = tmp_path / "resources"
    outputs = [p for p in resources.rglob("TaskE_*.pkl") if "log" not in p.relative_to(resources).parts]
    assert len(outputs) == 3 and all(p.stat().st_uid == os.getuid() for p in outputs)
    logs = list(Path(result.run_dir or "").glob(f"logs/{result.invocation_id}/TaskC-*.log"))
    assert len(logs) == 3
    assert run_containers(engine, result.run_id) == []


def test_a_bullet_past_its_timeout_is_stopped_with_deadline_exceeded(engine: Any, image: str,
                                                                    tmp_path: Path) -> None:  # fmt: skip
    from tests.support.tasks import Bullet

    task = Bullet(name="sleepy-docker", sleep=300, started_file=str(tmp_path / "started")).with_hints(timeout=30)
    with pytest.raises(KannonBuildError) as err:
        Kannon(executor=DockerExecutor(image, volumes=python_volumes()), sys_path=[str(REPO)]).build(task)
    (record,) = err.value.result.failed
    # it ran in its container and was stopped while sleeping (300 s). The 30 s deadline counts from the launch: it
    # leaves a loaded machine ample time to start the container, or the task would be stopped before it ran.
    assert (tmp_path / "started").exists()
    assert record.last is not None and record.last.failure_class == "DeadlineExceeded", record.reason
    assert "timeout of 30" in (record.reason or "")
    assert run_containers(engine, err.value.result.run_id) == []


def test_a_module_missing_in_the_container_fails_exit_8_import_failed(
    engine: Any, image: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On the master's sys.path only, and outside the working directory (which is mounted into the container): the
    # folder travels with the spec (handoff.import_roots), but the container cannot see it.
    mods = tmp_path_factory.mktemp("master_only")
    (mods / "docker_master_only.py").write_text("import kannon\n\n\nclass OnlyInTheMaster(kannon.TaskOnBullet):\n"
                                                "    def run(self):\n        self.dump('never')\n")  # fmt: skip
    monkeypatch.syspath_prepend(str(mods))
    import docker_master_only  # type: ignore[import-not-found]

    # the plan-time probe refuses this before anything runs (test_docker_import_probe.py); skip it to reach the child
    monkeypatch.setattr(DockerExecutor, "import_failures", lambda self, modules, sys_path, image=None: {})
    with pytest.raises(KannonBuildError) as err:
        Kannon(executor=DockerExecutor(image, volumes=python_volumes()),
               sys_path=[str(REPO)]).build(docker_master_only.OnlyInTheMaster())  # fmt: skip
    (record,) = err.value.result.failed
    assert [a.exit_code for a in record.attempts] == [8], (record.reason, record.last and record.last.log_tail)
    assert record.last is not None and record.last.failure_class == "ImportFailed"
    assert "docker_master_only" in (record.reason or "") and "--volume" in (record.reason or ""), record.reason
    assert run_containers(engine, err.value.result.run_id) == []


def test_failures_in_containers_are_classified(engine: Any, image: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    root, extra = load_target(f"{TASKS}:failing")
    with pytest.raises(KannonBuildError) as err:
        Kannon(executor=DockerExecutor(image, volumes=python_volumes()), sys_path=extra).build(root)
    result = err.value.result
    by_family = {r.family: r for r in result.tasks.values()}
    hog, raises = by_family["Hog"], by_family["Raises"]
    assert hog.status is Status.FAILED and hog.last is not None
    assert (hog.last.exit_code, hog.last.failure_class) == (137, "OOMKilled")
    assert "48Mi" in (hog.reason or "") and "raise `memory`" in (hog.reason or "")
    assert raises.status is Status.FAILED and raises.last is not None
    assert raises.last.exit_code == 6 and "broken on purpose" in (raises.reason or "")
    assert any("ValueError: broken on purpose" in line for line in raises.last.log_tail)
    (log,) = Path(result.run_dir or "").glob(f"logs/{result.invocation_id}/Raises-*.log")
    assert "about to fail" in log.read_text()  # the whole output is kept, not just the tail
    assert by_family["DockerJoin"].status is Status.UPSTREAM_FAILED
    assert "OOMKilled" in str(err.value) or "out of memory" in str(err.value)
    assert run_containers(engine, result.run_id) == []


# -- through the CLI ----------------------------------------------------------------------------------------------
def test_cli_quickstart_on_docker(engine: Any, image: str, tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "kannon",
        "build",
        f"{REPO}/examples/quickstart/pipeline.py:root",
        "--backend",
        "docker",
        "--image",
        image,
        "--env",
        "QUICKSTART_BULLET_SECONDS",
        "--events",
        "events.jsonl",
    ]
    for volume in python_volumes():
        argv += ["--volume", volume]
    env = {**os.environ, "QUICKSTART_BULLET_SECONDS": "0"}  # --env with a bare name copies it into the containers
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "13 succeeded" in done.stdout + done.stderr
    records = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    bullet_starts = [e for e in records if e["kind"] == "started" and e.get("backend") == "docker"]
    assert len(bullet_starts) == 9 and all(e["where"].startswith("container kannon-") for e in bullet_starts)
    run_id = records[0]["run_id"]
    assert run_containers(engine, run_id) == []


def cli(image: str, tmp_path: Path, events: Path, flag: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "kannon", "build", f"{TASKS}:waiting", "--backend", "docker", "--image", image,
            "--events", str(events)]  # fmt: skip
    for volume in python_volumes():
        argv += ["--volume", volume]
    env = {**os.environ, "DOCKERTASKS_FLAG": str(flag)}
    return subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip


def wait_container_events(engine: Any, since: float, action: str, count: int, timeout: float = 180) -> list[dict]:
    """Block on the engine's event stream until ``count`` Waiter containers did ``action`` (or time out)."""
    labels = [f"{LABEL_MANAGED}=kannon", f"{LABEL_FAMILY}=Waiter"]
    # "seconds.nanoseconds": whole seconds would replay the previous test's containers
    stream = engine.events(since=f"{since:.9f}", until=int(time.time() + timeout), decode=True,
                           filters={"type": "container", "event": action, "label": labels})  # fmt: skip
    seen: list[dict] = []
    try:
        for event in stream:
            seen.append(event)
            if len(seen) >= count:
                break
    finally:
        stream.close()
    assert len(seen) >= count, f"only {len(seen)} container {action} event(s) within {timeout}s"
    return seen


def wait_for_file_line(path: Path, predicate: Any, proc: subprocess.Popen[str], timeout: float = 180) -> None:
    """Wait until a JSON line of ``path`` satisfies ``predicate`` (the run's event log, written line by line)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    if predicate(json.loads(line)):
                        return
                except json.JSONDecodeError:
                    continue
        assert proc.poll() is None, f"kannon exited early ({proc.returncode}): {proc.communicate()[0]}"
        time.sleep(0.1)  # a file has no change notification here; this polls a condition, with a deadline
    raise AssertionError(f"no matching event in {path} within {timeout}s")


def test_cli_sigterm_stops_and_removes_every_container(engine: Any, image: str, tmp_path: Path) -> None:
    since = time.time()
    proc = cli(image, tmp_path, tmp_path / "events.jsonl", tmp_path / "never")
    try:
        started = wait_container_events(engine, since, "start", 2)
        run_id = started[0]["Actor"]["Attributes"][LABEL_RUN]
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "cancelled" in output
    assert run_containers(engine, run_id) == []


def test_cli_rerun_after_sigkill_adopts_running_containers(engine: Any, image: str, tmp_path: Path) -> None:
    flag = tmp_path / "release"
    since = time.time()
    first = cli(image, tmp_path, tmp_path / "events1.jsonl", flag)
    try:
        started = wait_container_events(engine, since, "start", 2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the master dies without any cleanup
        first.communicate()
    run_id = started[0]["Actor"]["Attributes"][LABEL_RUN]
    before = {c.id for c in run_containers(engine, run_id)}
    assert len(before) == 2 and all(c.status == "running" for c in run_containers(engine, run_id))

    killed_at = time.time()
    events = tmp_path / "events2.jsonl"
    second = cli(image, tmp_path, events, flag)
    try:
        adopted = lambda e: e.get("kind") == "started" and "adopted" in e.get("where", "")  # noqa: E731
        wait_for_file_line(events, adopted, second)
        flag.touch()
        output, _ = second.communicate(timeout=180)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, output
    records = [json.loads(line) for line in events.read_text().splitlines()]
    starts = [e for e in records if e["kind"] == "started" and e.get("family") == "Waiter"]
    assert len(starts) == 2 and all("adopted" in e["where"] for e in starts)
    assert {e["where"].split("(")[1][:12] for e in starts} == {cid[:12] for cid in before}
    created = list(
        engine.events(
            since=f"{killed_at:.9f}",
            until=int(time.time()) + 1,
            decode=True,
            filters={"type": "container", "event": "create", "label": f"{LABEL_RUN}={run_id}"},
        )
    )
    assert created == []  # nothing was started again
    assert run_containers(engine, run_id) == []


def test_cli_backend_errors_are_one_clear_line(engine: Any, image: str, tmp_path: Path) -> None:
    base = [sys.executable, "-m", "kannon", "build", f"{REPO}/examples/quickstart/pipeline.py:root", "--backend",
            "docker"]  # fmt: skip
    missing = subprocess.run([*base, "--image", "kannon-no-such-image:never"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=300)  # fmt: skip
    assert missing.returncode == 2, missing.stderr
    assert "docker build -t kannon-no-such-image:never" in missing.stderr and "Traceback" not in missing.stderr
    dead = tmp_path / "dead.sock"
    unreachable = subprocess.run([*base, "--image", image], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                                 env={**os.environ, "DOCKER_HOST": f"unix://{dead}"})  # fmt: skip
    assert unreachable.returncode == 2, unreachable.stderr
    assert f"unix://{dead} (from DOCKER_HOST)" in unreachable.stderr and "Traceback" not in unreachable.stderr
