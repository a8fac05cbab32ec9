"""Adopt only the same thing (issue 10 §3): a re-attaching master adopts an earlier master's running Job only when
it runs what this master would run (image, command with the hand-off spec's hash, resources, placement — the Job's
spec-hash annotation); otherwise the Job is deleted, a fresh one created, and the attempt says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kannon.backends.kubernetes import ANNOTATION_SPEC_HASH, job_name
from kannon.hints import Hints
from kannon.testing import KubeEmulator
from tests.e2e.k8s import test_k8s_backend as kb
from tests.e2e.k8s.test_k8s_backend import launch_of, requests, wait_flag

pytestmark = pytest.mark.k8s
make = kb.make  # the executor factory fixture


def _die(executor: Any) -> None:
    """The master is gone (SIGKILL): its watches stop, nothing is cleaned up."""
    executor._stop.set()
    for w in executor._watchers:
        w.stop()


@pytest.mark.parametrize("change", ["command", "resources"])
def test_a_leftover_that_runs_something_else_is_replaced_not_adopted(
    kube: KubeEmulator, make: Any, tmp_path: Path, change: str
) -> None:
    first, rec1 = make()
    old_code = wait_flag(tmp_path / "go", "print('old')")
    old = launch_of(tmp_path, 1, old_code, attempt=2, hints=Hints(cpu="100m"))
    first.launch(old)
    rec1.wait_started(old.key)
    old_name = job_name("kannon", "run1", old.task_id, 2, "Script")
    assert kube.jobs()[old_name]["metadata"]["annotations"][ANNOTATION_SPEC_HASH]
    _die(first)
    creates = len(requests(kube, "POST", "/jobs"))

    second, rec2 = make()
    code = "print('new')" if change == "command" else old_code
    new = launch_of(tmp_path, 1, code, attempt=1, hints=Hints(cpu="100m" if change == "command" else "200m"))
    second.launch(new)
    started = rec2.wait_started(new.key)
    assert started.where is not None and started.where.endswith("(replaced a changed Job)")
    (tmp_path / "go").touch()
    fin = rec2.wait_finished(new.key)
    assert fin.ok and fin.log_tail[-1] == ("new" if change == "command" else "old")
    assert old_name not in kube.jobs()  # the changed Job was deleted, its pod with it
    assert not [p for p in kube.pods().values() if p["metadata"]["labels"].get("job-name") == old_name]
    assert len(requests(kube, "POST", "/jobs")) == creates + 1
    # the master cached the earlier master's pods (no attempt of its own tracks that Job): gone with the Job
    kube.wait_for(lambda: old_name not in second._pods and old_name not in second._pods_deleted, timeout=10,
                  message="the pods of a deleted leftover Job are still cached")  # fmt: skip
    text = new.log_path.read_text()
    assert f"Job {old_name} of an earlier master runs a different {change}: deleted, not adopted" in text


def test_a_same_named_job_that_runs_something_else_is_replaced_on_409(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    """An earlier master created this very attempt's Job (same name) with other code: 409, compared, replaced."""
    other, _ = make()
    before = launch_of(tmp_path, 1, wait_flag(tmp_path / "never", "print('old')"))
    other.launch(before)
    name = job_name("kannon", "run1", before.task_id, 1, "Script")
    kube.wait_for(lambda: name in kube.jobs(), timeout=30, message="the first Job was never created")
    first_uid = kube.jobs()[name]["metadata"]["uid"]
    executor, rec = make()
    now = launch_of(tmp_path, 1, "print('new')")
    executor.launch(now)
    fin = rec.wait_finished(now.key)
    assert fin.ok and fin.log_tail[-1] == "new"
    assert kube.jobs()[name]["metadata"]["uid"] != first_uid
    assert "runs a different command: deleted, not adopted" in now.log_path.read_text()


def test_a_leftover_that_runs_the_same_thing_is_still_adopted(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    first, rec1 = make()
    code = wait_flag(tmp_path / "go", "print('adopted')")
    first.launch(launch_of(tmp_path, 1, code, attempt=2, hints=Hints(cpu="100m")))
    rec1.wait_started(f"{1:032x}-2")
    _die(first)
    creates = len(requests(kube, "POST", "/jobs"))
    second, rec2 = make()
    again = launch_of(tmp_path, 1, code, attempt=1, hints=Hints(cpu="100m"))
    second.launch(again)
    assert (rec2.wait_started(again.key).where or "").endswith("(adopted)")
    (tmp_path / "go").touch()
    fin = rec2.wait_finished(again.key)
    assert fin.ok and fin.log_tail[-1] == "adopted"
    assert len(requests(kube, "POST", "/jobs")) == creates
