"""Warm process pods (``KubeEmulator(warm_imports=...)``): forked from a pre-imported interpreter, and observably the
same as a fresh interpreter for everything a container's program can see: argv, sys.path, environment, working
directory, exit codes, output, threads and atexit at exit, and no process outliving its pod or the emulator."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kannon.backends.kubernetes import K8sJobExecutor
from kannon.cli import load_target
from kannon.scheduler import Kannon
from kannon.testing import KubeEmulator
from kannon.testing.kube.node.process_runtime import ProcessRuntime
from kannon.testing.kube.node.warm import _Zygote, warm_command
from tests.e2e.k8s.test_emulator import pods_of, wait_finished
from tests.support.procs import children_of, gone, wait_until

pytestmark = pytest.mark.k8s

PY = sys.executable
REPO = Path(__file__).resolve().parents[3]
MARKER = "wave"  # a stdlib module nothing here imports: pre-imported by the zygote, so a child can tell it is warm


@pytest.fixture
def warm() -> Iterator[KubeEmulator]:
    with KubeEmulator(runtime="process", warm_imports=[MARKER], bookmark_interval=0.3) as emulator:
        yield emulator


@pytest.fixture
def cold() -> Iterator[KubeEmulator]:
    with KubeEmulator(runtime="process", bookmark_interval=0.3) as emulator:
        yield emulator


def create_job(kube: KubeEmulator, name: str, command: list[str], workdir: Path,
               env: dict[str, str] | None = None, **pod_spec: Any) -> None:  # fmt: skip
    """A Job of one pod (no retries) running ``command`` in ``workdir``."""
    ctr = {"name": "main", "image": "python:3", "command": command, "workingDir": str(workdir),
           "env": [{"name": k, "value": v} for k, v in (env or {}).items()]}  # fmt: skip
    pod = {"restartPolicy": "Never", "containers": [ctr], **pod_spec}
    body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": pod}}}  # fmt: skip
    client.BatchV1Api(kube.api_client()).create_namespaced_job("default", body)


def first_output(kube: KubeEmulator, job: str) -> str:
    """What the Job's first pod has printed, once it printed anything (the tests' pods print their pids)."""
    pod = kube.wait_for(lambda: pods_of(kube, job), timeout=60)[0]["metadata"]["name"]
    return kube.wait_for(lambda: kube.pod_log(pod).strip(), timeout=60)


def zygote_of(kube: KubeEmulator) -> _Zygote:
    """This interpreter's zygote in the emulator's process runtime."""
    runtime = kube.kubelet.runtime
    assert isinstance(runtime, ProcessRuntime)
    zygote = runtime._zygotes[PY]
    assert zygote is not None
    return zygote


# A pod's process is PID 1 of its own PID namespace; /proc is the node's, so /proc/self names its PID on the node.
SLEEPER = [PY, "-c", "import os, time; print(os.readlink('/proc/self'), flush=True); time.sleep(600)"]


def run_job(kube: KubeEmulator, name: str, command: list[str], workdir: Path, **env: str) -> tuple[int, str]:
    """Run a Job with one pod (no retries) and return its container's exit code and log."""
    create_job(kube, name, command, workdir, env)
    wait_finished(kube, name, timeout=120)
    pod = pods_of(kube, name)[-1]
    code = pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]
    return int(code), kube.pod_log(pod["metadata"]["name"])


PROBE = textwrap.dedent("""
    import atexit, json, os, sys, threading
    atexit.register(lambda: print("atexit ran", flush=True))
    threading.Thread(target=lambda: print("non-daemon thread finished", flush=True)).start()
    print(json.dumps({"argv": sys.argv, "path": sys.path[:2], "cwd": os.getcwd(), "foo": os.environ.get("FOO"),
                      "name": __name__, "warm": "MARKER" in sys.modules}), flush=True)
""").replace("MARKER", MARKER)


def probe(log: str) -> dict[str, Any]:
    return dict(json.loads(next(line for line in log.splitlines() if line.startswith("{"))))


def both(warm: KubeEmulator, cold: KubeEmulator, command: list[str], workdir: Path, **env: str) -> tuple[Any, Any]:
    return run_job(warm, "probe", command, workdir, **env), run_job(cold, "probe", command, workdir, **env)


def test_python_c_sees_what_a_fresh_interpreter_sees(warm: KubeEmulator, cold: KubeEmulator, tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    code = PROBE + "sys.exit(3)\n"
    (w_code, w_log), (c_code, c_log) = both(warm, cold, [PY, "-c", code, "a1", "--flag"], tmp_path,
                                            FOO="bar", PYTHONPATH=str(tmp_path / "lib"))  # fmt: skip
    assert w_code == c_code == 3
    w, c = probe(w_log), probe(c_log)
    assert w.pop("warm") is True and c.pop("warm") is False
    assert w == c == {"argv": ["-c", "a1", "--flag"], "path": ["", str(tmp_path / "lib")], "cwd": str(tmp_path),
                      "foo": "bar", "name": "__main__"}  # fmt: skip
    # at exit: non-daemon threads joined, then atexit callbacks, as interpreter shutdown does
    for log in (w_log, c_log):
        assert log.index("non-daemon thread finished") < log.index("atexit ran")


def test_python_m_and_system_exit_message(warm: KubeEmulator, cold: KubeEmulator, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "warmprobe_mod.py").write_text(PROBE + "raise SystemExit('stopping: bad input')\n")
    (w_code, w_log), (c_code, c_log) = both(warm, cold, [PY, "-m", "warmprobe_mod", "x"], tmp_path,
                                            PYTHONPATH=str(lib))  # fmt: skip
    assert w_code == c_code == 1
    w, c = probe(w_log), probe(c_log)
    assert w.pop("warm") is True and c.pop("warm") is False
    assert w == c
    assert w["argv"] == [str(lib / "warmprobe_mod.py"), "x"] and w["path"] == [str(tmp_path), str(lib)]
    assert "stopping: bad input" in w_log and "stopping: bad input" in c_log


def test_script_and_uncaught_exception(warm: KubeEmulator, cold: KubeEmulator, tmp_path: Path) -> None:
    script = tmp_path / "bin" / "job.py"
    script.parent.mkdir()
    script.write_text(PROBE + "raise RuntimeError('boom in the container')\n")
    (w_code, w_log), (c_code, c_log) = both(warm, cold, [PY, str(script), "y"], tmp_path)
    assert w_code == c_code == 1
    w, c = probe(w_log), probe(c_log)
    assert w.pop("warm") is True and c.pop("warm") is False
    assert w == c and w["argv"] == [str(script), "y"] and w["path"][0] == str(script.parent)
    for log in (w_log, c_log):
        assert "Traceback" in log and "RuntimeError: boom in the container" in log


def test_other_commands_start_cold(warm: KubeEmulator, tmp_path: Path) -> None:
    # interpreter options are not served by the zygote (it was started without them): a fresh interpreter
    code, log = run_job(warm, "opts", [PY, "-S", "-c", f"import sys; print({MARKER!r} in sys.modules)"], tmp_path)
    assert (code, log.strip()) == (0, "False")
    assert run_job(warm, "notpython", ["false"], tmp_path)[0] == 1


def test_deleting_the_job_kills_the_pods_process_group(warm: KubeEmulator, tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import os, subprocess, sys, time
        show = "import os, time; print(os.readlink('/proc/self'), flush=True); time.sleep(600)"
        child = subprocess.Popen([{PY!r}, "-c", show], stdout=subprocess.PIPE, text=True)
        print(os.readlink("/proc/self"), child.stdout.readline().strip(), flush=True)  # PIDs on the node
        time.sleep(600)
    """)
    create_job(warm, "sleeper", [PY, "-c", code], tmp_path, terminationGracePeriodSeconds=1)
    pids = [int(p) for p in first_output(warm, "sleeper").split()]
    assert len(pids) == 2 and not any(gone(p) for p in pids)
    client.BatchV1Api(warm.api_client()).delete_namespaced_job("sleeper", "default", propagation_policy="Background")
    wait_until(lambda: all(gone(p) for p in pids), timeout=60, what="the pod's processes to be killed")


def test_a_dead_zygote_fails_its_pods_and_is_replaced(warm: KubeEmulator, tmp_path: Path) -> None:
    create_job(warm, "orphaned", SLEEPER, tmp_path)
    pid = int(first_output(warm, "orphaned"))
    os.kill(zygote_of(warm).server.pid, signal.SIGKILL)
    job = wait_finished(warm, "orphaned", timeout=60)
    assert job["status"].get("failed") == 1
    state = pods_of(warm, "orphaned")[-1]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == 137
    wait_until(lambda: gone(pid), timeout=30, what="the dead zygote's child to be killed")
    code, log = run_job(warm, "after", [PY, "-c", f"import sys; print({MARKER!r} in sys.modules)"], tmp_path)
    assert (code, log.strip()) == (0, "True")  # a new zygote


def test_stopping_the_emulator_leaves_no_process(tmp_path: Path) -> None:
    with KubeEmulator(runtime="process", warm_imports=[MARKER]) as kube:
        create_job(kube, "left", SLEEPER, tmp_path)
        pid = int(first_output(kube, "left"))
        zpid = zygote_of(kube).server.pid
    wait_until(lambda: gone(pid) and gone(zpid), timeout=30, what="the pod and its zygote to be gone")


def test_kannon_pipeline_on_warm_pods(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What the benchmark measures must work end to end: `python -m kannon run-task` forked from a zygote that
    # pre-imported gokart and kannon.child.
    monkeypatch.setenv("QUICKSTART_BULLET_SECONDS", "0.05")
    monkeypatch.setenv("QUICKSTART_MASTER_SECONDS", "0.01")
    monkeypatch.chdir(tmp_path)
    root, extra = load_target(f"{REPO}/examples/quickstart/pipeline.py:root")
    template = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": "default"},
                "spec": {"template": {"spec": {"containers": [{
                    "name": "main", "image": "kannon-test:latest", "workingDir": str(tmp_path),
                    "env": [{"name": "PYTHONPATH", "value": str(REPO)}]}]}}}}  # fmt: skip
    with KubeEmulator(runtime="process", warm_imports=["gokart", "kannon.child"]) as kube:
        executor = K8sJobExecutor(template, api_client=kube.api_client(), python=PY)
        inherit = ["QUICKSTART_BULLET_SECONDS", "QUICKSTART_MASTER_SECONDS"]
        result = Kannon(executor=executor, sys_path=extra, env_to_inherit=inherit).build(root)
        assert zygote_of(kube).loaded == ["gokart", "kannon.child"]
    assert result.ok
    assert root.output().load() == "G(F(E0(D0(C0(B(A(a))))), E1(D1(C1(B(A(a))))), E2(D2(C2(B(A(a)))))))"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([PY, "-m", "kannon", "run-task"], (PY, "m", "kannon", ["run-task"])),
        ([PY, "-c", "pass", "x"], (PY, "c", "pass", ["x"])),
        ([PY, "script.py"], (PY, "script", "script.py", [])),
        ([PY, "-S", "-c", "pass"], None),
        ([PY, "-m"], None),
        ([PY], None),
        (["/bin/true", "-c", "x"], None),
        (["python3-config", "-c", "x"], None),
    ],
)
def test_which_commands_are_warm(argv: list[str], expected: Any) -> None:
    assert warm_command(argv, {"PATH": os.environ.get("PATH", "")}) == expected


def test_bare_python_resolves_through_the_pods_path(tmp_path: Path) -> None:
    (tmp_path / "python3").symlink_to(PY)
    assert warm_command(["python3", "-c", "pass"], {"PATH": str(tmp_path)}) == (
        str(tmp_path / "python3"), "c", "pass", [])  # fmt: skip
    assert warm_command(["python3", "-c", "pass"], {"PATH": str(tmp_path / "missing")}) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root (CI runs as root)")
def test_a_warm_pod_starts_from_a_process_forked_ahead_and_runs_in_one_forked_for_it(tmp_path: Path) -> None:
    # A pod's start does not wait for the zygote to fork (its spares are ready, as the local backend's are), yet
    # what the container runs is PID 1 forked once the pod started: its process start (which a child measures its
    # wall time from, kannon.measure) is the pod's, not the spare's.
    with KubeEmulator(runtime="process", warm_imports=[MARKER]) as kube:
        kube.warm_up()
        ahead = wait_until(lambda: set(children_of(zygote_of(kube).server.pid)), 60, "the zygote's spares")
        create_job(kube, "sleeper", SLEEPER, tmp_path)
        pid = int(first_output(kube, "sleeper"))
        with open(f"/proc/{pid}/stat") as f:
            parent = int(f.read().rsplit(")", 1)[1].split()[1])
        assert parent in ahead and pid not in ahead


def test_a_warm_pods_memory_limit_is_a_real_oom_kill_in_a_cgroup_of_its_own(tmp_path: Path) -> None:
    # Its cgroup is a spare's own, renamed and given the pod's limit (kannon.forkserver's "cgroup"); the spares'
    # cgroups go with the zygote.
    from kannon.testing.kube.node.cgroups import _cgroup_base

    base = _cgroup_base()
    if base is None or os.geteuid() != 0:
        pytest.skip("no writable memory cgroup here, or no PID namespaces (then no spares)")
    hog = "b = []\nwhile True: b.append(bytearray(16 * 1024 * 1024))"
    ctr = {"name": "main", "image": "python:3", "command": [PY, "-c", hog], "workingDir": str(tmp_path),
           "resources": {"limits": {"memory": "64Mi"}}}  # fmt: skip
    body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "hog"},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [ctr]}}}}
    with KubeEmulator(runtime="process", warm_imports=[MARKER]) as kube:
        kube.warm_up()
        zpid = zygote_of(kube).server.pid
        spares = wait_until(lambda: {base[0] / f"kannon-spare-{p}" for p in children_of(zpid)
                                     if (base[0] / f"kannon-spare-{p}").is_dir()}, 60, "the spares' cgroups")
        client.BatchV1Api(kube.api_client()).create_namespaced_job("default", body)
        wait_finished(kube, "hog", timeout=120)
        term = pods_of(kube, "hog")[0]["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (term["exitCode"], term["reason"]) == (137, "OOMKilled")
    assert not any(d.exists() for d in spares)


def test_zygotes_start_with_the_emulator_or_at_their_first_pod(tmp_path: Path) -> None:
    with KubeEmulator(runtime="process", warm_imports=[MARKER]) as kube:
        kube.warm_up()
        zygote = zygote_of(kube)  # this interpreter's, before any pod asked for it
        assert zygote.loaded == [MARKER] and not zygote.failed
    with KubeEmulator(runtime="process", warm_imports=[MARKER, "no_such_module_here"], warm_interpreters=[]) as kube:
        kube.warm_up()
        runtime = kube.kubelet.runtime
        assert isinstance(runtime, ProcessRuntime)
        assert runtime._zygotes == {}
        code, log = run_job(kube, "first", [PY, "-c", f"import sys; print({MARKER!r} in sys.modules)"], tmp_path)
        assert (code, log.strip()) == (0, "True")
        zygote = zygote_of(kube)
        assert zygote.loaded == [MARKER]
        assert zygote.failed and zygote.failed[0].startswith("no_such_module_here: ModuleNotFoundError")
