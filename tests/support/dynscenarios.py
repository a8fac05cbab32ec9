"""Issue 13's dynamic-dependency scenarios, one body per scenario shared by the local, Docker and Kubernetes
tests: each takes a factory of the backend's executor and the prefix of that backend's ``where`` (``pid `` /
``container kannon-`` / ``pod kannon-``), and asserts where every task ran and what each yield received."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import luigi

import kannon
from kannon.backends.base import Executor
from kannon.events import Event
from kannon.result import KannonBuildError, Status
from tests.faults.harness import Master, wait_until
from tests.support import dyntasks as dt

MakeExecutor = Callable[[], Executor]


class Recorder:
    """A kannon_event observer: every event of the build, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    @kannon.hookimpl
    def kannon_event(self, event: Event) -> None:
        self.events.append(event)

    def launches(self, family: str) -> int:
        return sum(1 for e in self.events if e.kind == "launched" and e.family == family)


def build(make: MakeExecutor, root: Any, **options: Any) -> tuple[kannon.BuildResult, Recorder]:
    rec = Recorder()
    result = kannon.Kannon(executor=make(), observers=[rec], **options).build(root)
    return result, rec


def nested_yield(make: MakeExecutor, runs_dir: Path, where: str, **options: Any) -> None:
    """The master task yields bullet A; A's run() yields bullet B; B runs in a child / container / pod of its own,
    A runs again (in a new one) and gets B's output; the master task runs again in the master and gets A's."""
    root = dt.NestedYielder(names=["inner"], runs_dir=str(runs_dir))
    result, rec = build(make, root, **options)
    by_family = {r.family: r for r in result.tasks.values()}
    outer, middle, inner = by_family["NestedYielder"], by_family["BulletYielder"], by_family["PidBullet"]
    assert outer.task_id == result.root_id
    assert middle.requested_by == outer.task_id and inner.requested_by == middle.task_id  # who yielded whom
    assert outer.requested == (middle.task_id,) and middle.requested == (inner.task_id,)
    for rec_ in (outer, middle, inner):
        assert rec_.status is Status.SUCCEEDED
    assert [a.where for a in outer.attempts] == ["master", "master"]  # stopped at the yield, then ran to the end
    middle_wheres = [a.where or "" for a in middle.attempts]
    assert len(middle_wheres) == 2 and all(w.startswith(where) for w in middle_wheres), middle_wheres
    assert middle_wheres[0] != middle_wheres[1]  # a new child / container / pod for the run after the yield
    assert middle.attempts[0].requested == (inner.task_id,) and not middle.attempts[1].requested
    inner_wheres = [a.where or "" for a in inner.attempts]
    assert len(inner_wheres) == 1 and inner_wheres[0].startswith(where) and inner_wheres[0] not in middle_wheres
    assert [rec.launches(f) for f in ("NestedYielder", "BulletYielder", "PidBullet")] == [2, 2, 1]
    requested = [(e.task_id, e.requested_by) for e in rec.events if e.kind == "requested"]
    assert requested == [(middle.task_id, outer.task_id), (inner.task_id, middle.task_id)]
    # the values each yield received: the master task got A's output, which holds B's
    master = os.getpid()
    middle_pids, inner_pids = dt.runs(runs_dir, "byielder"), dt.runs(runs_dir, "inner")
    assert dt.runs(runs_dir, "nested") == [master, master] and len(middle_pids) == 2 and len(inner_pids) == 1
    out = root.output().load()
    assert out == {"pid": master, "value": {"pid": middle_pids[1], "values": [{"name": "inner", "pid": inner_pids[0]}]}}
    assert master not in middle_pids + inner_pids


def yield_of_complete_tasks(make: MakeExecutor, runs_dir: Path, where: str, **options: Any) -> None:
    """Yielded tasks already complete (made by an earlier build) are not launched again and never stop the task."""
    for name in "ab":
        made, first = build(make, dt.PidBullet(name=name, runs_dir=str(runs_dir)), **options)
        assert first.launches("PidBullet") == 1
        assert (made.tasks[made.root_id].last.where or "").startswith(where)  # type: ignore[union-attr]
    luigi.task_register.Register.clear_instance_cache()
    root = dt.Yielder(names=["a", "b"], runs_dir=str(runs_dir))
    _, rec = build(make, root, **options)
    assert rec.launches("Yielder") == 1 and rec.launches("PidBullet") == 0  # exact counts from the events
    assert [e for e in rec.events if e.kind == "requested"] == []
    assert [len(dt.runs(runs_dir, n)) for n in ["yielder", "a", "b"]] == [1, 1, 1]
    out = root.output().load()
    assert out["pid"] == os.getpid()
    assert out["values"] == [{"name": n, "pid": dt.runs(runs_dir, n)[0]} for n in "ab"]  # the earlier outputs


def yielded_bullet_fails(make: MakeExecutor, runs_dir: Path, where: str, retries: int, **options: Any) -> None:
    """A yielded bullet that always fails: each attempt in its own child / container / pod, then the yielder is
    upstream_failed and never runs again; its sibling still succeeds."""
    root = dt.Yielder(names=["bad", "good"], runs_dir=str(runs_dir), fail_times=99)
    try:
        build(make, root, retries=retries, retry_delay=0.0, **options)
    except KannonBuildError as e:
        result = e.result
    else:
        raise AssertionError("the build should have failed")
    by_name = {r.params: r for r in result.tasks.values()}
    bad, good = by_name["name=bad"], by_name["name=good"]
    assert bad.status is Status.FAILED and len(bad.attempts) == retries + 1
    assert all((a.where or "").startswith(where) for a in bad.attempts), [a.where for a in bad.attempts]
    assert good.status is Status.SUCCEEDED and [(a.where or "")[: len(where)] for a in good.attempts] == [where]
    yielder = result.tasks[result.root_id]
    assert yielder.status is Status.UPSTREAM_FAILED and "PidBullet" in (yielder.reason or "")
    assert [a.where for a in yielder.attempts] == ["master"]
    assert len(dt.runs(runs_dir, "yielder")) == 1  # never run again
    assert len(dt.runs(runs_dir, "bad")) == retries + 1


def yielded_bullet_fails_once(make: MakeExecutor, runs_dir: Path, where: str, **options: Any) -> None:
    """With one retry, a yielded bullet that fails once is run again (a new child / container / pod) and the
    yielder finishes with its output."""
    root = dt.Yielder(names=["flaky"], runs_dir=str(runs_dir), fail_times=1)
    result, rec = build(make, root, retries=1, retry_delay=0.0, **options)
    assert rec.launches("PidBullet") == 2 and rec.launches("Yielder") == 2
    (flaky,) = [r for r in result.tasks.values() if r.family == "PidBullet"]
    wheres = [a.where or "" for a in flaky.attempts]
    assert len(wheres) == 2 and all(w.startswith(where) for w in wheres) and wheres[0] != wheres[1], wheres
    pids = dt.runs(runs_dir, "flaky")
    assert root.output().load() == {"pid": os.getpid(), "values": [{"name": "flaky", "pid": pids[1]}]}


def sigterm_while_yielded_bullets_run(workdir: Path, args: list[str], env: dict[str, str] | None,
                                      running: Callable[[Master], list[str]]) -> None:  # fmt: skip
    """SIGTERM to a real ``kannon build`` master while two yielded bullets run: it exits 143, cancels both and the
    yielder, leaves nothing ``running(master)`` reports (children / containers / Jobs and pods), and runs nothing
    again."""
    hold = workdir / "hold"
    hold.mkdir()
    (workdir / "pipe.py").write_text(
        "from tests.support.dyntasks import Yielder\n"
        f"def root():\n    return Yielder(names=['p', 'q'], runs_dir={str(workdir)!r}, hold_dir={str(hold)!r})\n")
    master = Master(workdir, "pipe.py:root", args, env, name="sigterm")
    try:
        wait_until(lambda: master.proc.poll() is not None or all((hold / f"{n}.started").exists() for n in "pq"),
                   300, "both yielded bullets to run")  # fmt: skip
        assert master.proc.poll() is None, master.output()
        master.tail.poll()
        seen = running(master)
        assert master.tail.run_id is not None and len(seen) >= 2, f"the scan is blind to the yielded bullets: {seen}"
        master.signal(signal.SIGTERM)
        code = master.wait(timeout=120)
    finally:
        master.stop()
    assert code == 128 + signal.SIGTERM, master.output()
    assert running(master) == []  # nothing left once the master exited
    evs = master.tail.events
    assert sorted(e["family"] for e in evs if e["kind"] == "launched") == ["PidBullet", "PidBullet", "Yielder"]
    assert sorted(e["family"] for e in evs if e["kind"] == "cancelled") == ["PidBullet", "PidBullet", "Yielder"]
    assert sorted(e["task_id"] for e in evs if e["kind"] == "requested") == sorted(
        e["task_id"] for e in evs if e["kind"] == "launched" and e["family"] == "PidBullet")  # fmt: skip
    # nothing was run again after the cancel: each bullet's body started once, the yielder's once
    assert [len(dt.runs(workdir, n)) for n in ["p", "q", "yielder"]] == [1, 1, 1]
