"""Issue 10 §1 through real local children: the child rebuilds the very task the master planned, not an object a
module built at import time under other config; a constructor value that differs is refused (exit 4) by name.
Also: a child's own crash (MemoryError while reading its spec) is never reported as a bad spec."""

from __future__ import annotations

import hashlib
import importlib
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import luigi
import pytest

import kannon
from kannon import exitcodes, handoff
from kannon.backends.local import LocalExecutor

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def configured_after_import(tmp_path: Path) -> Iterator[tuple[object, Path]]:
    """The pipeline module imported (its root built under the default config), then the master's config changed."""
    mod = importlib.import_module("tests.e2e.rebuildtasks")
    ws = tmp_path / "configured"
    cfg = luigi.configuration.get_config()
    cfg.set("TaskOnKart", "workspace_directory", str(ws))
    try:
        yield mod, ws
    finally:
        cfg.remove_option("TaskOnKart", "workspace_directory")


def check_import_time_pipeline(mod: object, ws: Path, tmp_path: Path, executor: kannon.Executor) -> None:
    """The master runs the module's import-time root (workspace ./resources/) with Up built after the config
    change (workspace ``ws``): the bullet must read Up from ``ws`` and write where the master looks."""
    root = mod.root  # type: ignore[attr-defined]
    assert root.workspace_directory == "./resources/"
    result = kannon.Kannon(executor=executor).build(root)
    assert result.ok
    assert root.output().load() == f"up@{ws} down@./resources/"
    assert (tmp_path / root.output().path()).exists()
    assert not list(ws.rglob("Down_*.pkl")), "the bullet wrote into the workspace of the config, not the master's"


@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_child_rebuilds_the_masters_task_not_the_import_time_object(
    configured_after_import: tuple[object, Path], tmp_path: Path, mode: str
) -> None:
    mod, ws = configured_after_import
    check_import_time_pipeline(mod, ws, tmp_path, LocalExecutor(mode=mode))


@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_an_import_time_upstream_the_child_cannot_reproduce_is_refused_by_name(tmp_path: Path, mode: str) -> None:
    """The master's requires() hands back the upstream object built at import time (before its config changed);
    a child builds it anew under the config the master has now: refused by name, not 'upstream missing'."""
    mod = importlib.import_module("tests.e2e.rebuildtasks")
    mod.Source()  # as the module did at import time (the test's fresh instance cache has forgotten it)
    cfg = luigi.configuration.get_config()
    cfg.set("TaskOnKart", "workspace_directory", str(tmp_path / "configured"))
    try:
        task = mod.Consumer(workspace_directory="./resources/")
        assert task.requires().workspace_directory == "./resources/"
        with pytest.raises(kannon.KannonBuildError) as e:
            kannon.Kannon(executor=LocalExecutor(mode=mode)).build(task)
    finally:
        cfg.remove_option("TaskOnKart", "workspace_directory")
    (rec,) = e.value.result.failed
    assert rec.last is not None and rec.last.exit_code == exitcodes.ID_MISMATCH, rec.reason
    assert f"Source [{mod.Source().make_unique_id()}], which Consumer requires" in (rec.reason or "")
    assert "parameter workspace_directory is" in (rec.reason or "") and "'./resources/' in the master" in (
        rec.reason or "")  # fmt: skip


@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_a_constructor_value_that_differs_in_the_child_is_refused_by_name(tmp_path: Path, mode: str) -> None:
    from tests.e2e.rebuildtasks import Scratchy

    task = Scratchy().with_hints(env={"TEST_SCRATCH_BASE": str(tmp_path / "child-scratch")})
    assert task.scratch == "/master-scratch/tmp"
    with pytest.raises(kannon.KannonBuildError) as e:
        kannon.Kannon(executor=LocalExecutor(mode=mode)).build(task)
    (rec,) = e.value.result.failed
    assert rec.last is not None and rec.last.exit_code == exitcodes.ID_MISMATCH
    assert rec.family == "Scratchy" and task.make_unique_id() in (rec.reason or "")
    assert "parameter scratch is" in (rec.reason or "") and "'/master-scratch/tmp'" in (rec.reason or "")
    assert not task.complete()


def test_memory_error_while_reading_the_spec_is_not_a_bad_spec(tmp_path: Path) -> None:
    # A child's own address space is measured first (the same imports the child makes before reading its spec),
    # then capped a little above it: the read of a spec larger than the margin raises MemoryError, as in issue 14.
    probe = subprocess.run(
        [sys.executable, "-c", "import kannon.child, kannon.handoff, kannon.storage, kannon.runner, argparse\n"
         "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmPeak')) * 1024)"],
        capture_output=True, text=True, check=True, cwd=REPO, timeout=120)  # fmt: skip
    margin = 96 * 1024 * 1024
    limit = int(probe.stdout.strip()) + margin
    spec = tmp_path / "spec.json"
    spec.write_bytes(b" " * (2 * margin))
    sha = hashlib.sha256(spec.read_bytes()).hexdigest()

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    out = subprocess.run([sys.executable, "-m", "kannon", *handoff.child_args(str(spec), "a" * 32, sha)],
                         preexec_fn=cap, capture_output=True, text=True, timeout=120, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    reason = exitcodes.describe(out.returncode, out.stderr.splitlines())
    assert out.returncode not in (0, exitcodes.BAD_SPEC), out.stderr[-2000:]
    assert "bad spec" not in reason and reason.endswith("MemoryError"), reason  # the type stands for the message
