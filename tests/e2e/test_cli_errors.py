"""Bad input never shows a traceback (issue 14 §3): one `kannon:` line and exit 2, through the real CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import kannon
from kannon.backends.local import LocalExecutor
from tests.support.procs import kannon as run_kannon
from tests.support.procs import wait_until

OK = """
    import kannon

    class T(kannon.TaskOnBullet[int]):
        def run(self):
            self.dump(1)

    root = T()

    def make_root():
        return T()

    _private = T()
"""


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    (tmp_path / "ok.py").write_text(textwrap.dedent(OK))
    return tmp_path


def one_line(out: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert out.returncode == code, out.stdout + out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("kannon: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-parallel", "0"], "argument --max-parallel: must be at least 1, got 0"),
        (["--max-parallel", "two"], "argument --max-parallel: expected a whole number, got 'two'"),
        (["--retries", "-1"], "argument --retries: must be 0 or more, got -1"),
        (["--wait-for-lease=-5"], "argument --wait-for-lease: must be a finite number of seconds >= 0, got -5"),
        (["--local-mode", "thread"], "argument --local-mode: invalid choice: 'thread'"),
        (["--no-such-option"], "unrecognized arguments: --no-such-option"),
    ],
)
def test_bad_option_values_are_one_line_and_exit_2(pipeline: Path, args: list[str], message: str) -> None:
    line = one_line(run_kannon("build", "ok.py:root", *args, cwd=pipeline))
    assert message in line and " --help`)" in line
    assert not (pipeline / "resources").exists()  # nothing ran


def test_a_missing_attribute_lists_the_modules_task_instances_and_functions(pipeline: Path) -> None:
    line = one_line(run_kannon("build", "ok.py:roots", cwd=pipeline))
    assert "ok has no attribute 'roots'" in line
    assert "task instances and functions: root, make_root()" in line and "_private" not in line


def _without_docker_sdk(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # exactly what `import docker` sees when the SDK is not installed
    code = "import sys; sys.modules['docker'] = None; from kannon.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_docker_backend_without_the_sdk_says_which_extra_to_install(pipeline: Path) -> None:
    line = one_line(_without_docker_sdk("build", "ok.py:root", "--backend", "docker", "--image", "x", cwd=pipeline))
    assert "pip install 'kannon[docker]'" in line
    line = one_line(_without_docker_sdk("plan", "ok.py:root", "--backend", "docker", cwd=pipeline))
    assert "pip install 'kannon[docker]'" in line
    listing = _without_docker_sdk("backends", cwd=pipeline)
    (docker_row,) = [ln for ln in listing.stdout.splitlines() if ln.startswith("docker ")]
    assert "UNAVAILABLE" in docker_row and "kannon[docker]" in docker_row
    (local_row,) = [ln for ln in listing.stdout.splitlines() if ln.startswith("local ")]
    assert "UNAVAILABLE" not in local_row


def test_ctrl_c_during_start_up_exits_130_with_one_line(tmp_path: Path) -> None:
    # The target module blocks while it imports (as a slow `import gokart` / user import would) and says so.
    flag = tmp_path / "importing"
    (tmp_path / "slow.py").write_text(textwrap.dedent(f"""
        import pathlib, time
        pathlib.Path({str(flag)!r}).write_text("x")
        time.sleep(120)
        import kannon
    """))
    proc = subprocess.Popen([sys.executable, "-m", "kannon", "build", "slow.py:root"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_until(flag.exists, timeout=120, what="the target module to start importing")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.splitlines() == ["kannon: interrupted (Ctrl-C); nothing was left running"], err


def test_version_and_rbac_help() -> None:
    out = run_kannon("--version", cwd=Path.cwd())
    assert out.returncode == 0 and out.stdout.startswith("kannon ") and out.stdout.split()[1][0].isdigit()
    rbac = run_kannon("k8s", "rbac", "--help", cwd=Path.cwd())
    assert "the namespace kannon creates its Jobs in" in rbac.stdout and "service account the master runs as" in (
        rbac.stdout.replace("\n", " ").replace("  ", " "))
    build = run_kannon("build", "--help", cwd=Path.cwd())
    assert "the number of CPUs for local" in " ".join(build.stdout.split())


def test_unreachable_kubernetes_api_is_one_line_per_retry_then_the_error(pipeline: Path) -> None:
    (pipeline / "kubeconfig").write_text(textwrap.dedent("""
        apiVersion: v1
        kind: Config
        clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
        users: [{name: u, user: {token: abc}}]
        contexts: [{name: x, context: {cluster: c, user: u, namespace: default}}]
        current-context: x
    """))
    (pipeline / "job.yaml").write_text("apiVersion: batch/v1\nkind: Job\nspec: {template: {spec: {containers: "
                                       "[{name: main, image: python:3.11}]}}}\n")  # fmt: skip
    out = run_kannon("build", "ok.py:root", "--backend", "kubernetes", "--job-template", "job.yaml", cwd=pipeline,
                     env={"KUBECONFIG": str(pipeline / "kubeconfig")})  # fmt: skip
    assert out.returncode == 2, out.stderr
    lines = out.stderr.splitlines()
    assert all(ln.startswith("kannon: ") for ln in lines), out.stderr
    assert "Retrying (Retry(" not in out.stderr and "Traceback" not in out.stderr
    assert "cannot reach the Kubernetes API" in lines[-1]
    retries = [ln for ln in lines if "retry" in ln and ln != lines[-1]]
    assert len(lines) == len(retries) + 1  # one line per retry at most, then the error


def test_a_child_interpreter_without_kannon_is_named_as_the_reason(tmp_path: Path) -> None:
    # A real interpreter that has no kannon (isolated mode ignores PYTHONPATH, the working directory and user sites)
    bare = tmp_path / "bare-python"
    bare.write_text(f"#!/bin/sh\nexec {sys.base_prefix}/bin/python3 -I -S \"$@\"\n")
    bare.chmod(0o755)
    from tests.support.tasks import Bullet

    ex = LocalExecutor(mode="spawn")
    ex.python = str(bare)
    with pytest.raises(kannon.KannonBuildError) as info:
        kannon.Kannon(executor=ex, run_dir=tmp_path / "runs").build(Bullet(name="nokannon", counter_dir=str(tmp_path)))
    (rec,) = info.value.result.failed
    assert rec.last is not None and rec.last.failure_class == "KannonNotImportable", rec.describe()
    reason = rec.last.reason or ""
    assert f"the child's interpreter {str(bare)!r} cannot import kannon" in reason, reason
    assert "LocalExecutor(python=...)" in reason


LEASE = """
import sys
import kannon.backends.base as base
import kannon.scheduler as scheduler
from kannon.cli import main

class LeaseHeld(Exception):  # the agreed interface (kannon.backends.base.LeaseHeld), as the core defines it
    def __init__(self, holder):
        super().__init__(holder)
        self.holder = holder

LeaseHeld.__module__ = "kannon.backends.base"
base.LeaseHeld = LeaseHeld
Real = scheduler.Kannon

class Kannon(Real):
    def __init__(self, *a, wait_for_lease=None, **kw):
        super().__init__(*a, **kw)
        print(f"wait_for_lease={wait_for_lease!r}")

    def build(self, root):
        raise LeaseHeld("host h1 pid 4242 (invocation 20261203T120102Z-3fa9c1) since 2026-12-03 12:01:02Z")

scheduler.Kannon = Kannon
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(("flag", "passed"), [([], "None"), (["--wait-for-lease"], "86400.0"),
                                              (["--wait-for-lease=30"], "30.0")])  # fmt: skip
def test_a_held_run_lease_is_one_line_naming_the_holder(pipeline: Path, flag: list[str], passed: str) -> None:
    out = subprocess.run([sys.executable, "-c", LEASE, "build", "ok.py:root", *flag], cwd=pipeline,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.stdout.strip() == f"wait_for_lease={passed}"
    line = one_line(out)
    assert line.startswith("kannon: another build of this pipeline holds its run lease: host h1 pid 4242 "
                           "(invocation 20261203T120102Z-3fa9c1) since 2026-12-03 12:01:02Z")  # fmt: skip
    assert ("--wait-for-lease" in line) == (not flag)  # the way out, unless already waiting


def test_a_damaged_run_key_is_one_line_naming_the_file_and_the_fix(pipeline: Path) -> None:
    first = run_kannon("build", "ok.py:root", "--workspace", "ws", cwd=pipeline)
    assert first.returncode == 0, first.stderr[-3000:]
    [key] = list((pipeline / "ws").rglob("spec.key"))
    key.write_text("")  # e.g. left by an older kannon killed between creating and writing it
    for output in (pipeline / "ws").rglob("T_*.pkl"):
        output.unlink()  # so the rerun has work to do
    line = one_line(run_kannon("build", "ok.py:root", "--workspace", "ws", cwd=pipeline))
    assert str(key) in line and "delete it" in line, line
