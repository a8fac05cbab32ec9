"""SIGINT/SIGTERM landing in each phase of a master task: the build always ends with Interrupted, its children
cancelled — never a loop waiting for a master result that cannot come.

Real signals, raised in this process's main thread (where kannon runs master tasks) at seams the test controls:
``before`` the task's code, ``inside`` it (the task's own run()), while its failure is being reported
(``failing``, as its traceback is formatted), and ``after`` it returned. 20 repetitions per phase, alternating
SIGINT and SIGTERM. A build that hung would be failed by the timeout below, not by luck.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import luigi
import pytest

from kannon.backends.base import Launch
from kannon.result import Status
from kannon.scheduler import Interrupted, Kannon, master
from tests.support.tasks import Bullet, Join, Leaf
from tests.unit.test_scheduler import FakeExecutor, ids

REPS = 20
BULLETS = 2
PHASES = ["before", "inside", "failing", "after"]

_children_running = threading.Event()
_ran: list[str] = []


class Signalled(Leaf):
    """A master task; in phase "inside" its own code receives the signal; in "failing" it raises."""

    phase = luigi.Parameter()
    signum = luigi.IntParameter()

    def run(self) -> None:
        _ran.append(self.name)
        if self.phase == "inside":
            _raise(self.signum)
            raise AssertionError("the signal did not interrupt the task's own code")
        if self.phase == "failing":
            raise ValueError("the task fails")
        super().run()


def _raise(signum: int) -> None:
    assert _children_running.wait(60), "the bullets never launched"
    signal.raise_signal(signum)  # delivered here, in the main thread, before raise_signal returns


@pytest.fixture
def seam() -> Iterator[dict[str, int]]:
    """``at[phase] = signum`` raises that signal when the master runner passes the seam of that phase."""
    at: dict[str, int] = {}

    def hook(phase: str) -> None:
        if phase in at:
            _raise(at.pop(phase))

    master.seam_hook = hook
    yield at
    master.seam_hook = None


@pytest.mark.timeout(120)  # a hang fails here (SIGALRM), not in CI's global limit
@pytest.mark.parametrize("phase", PHASES)
def test_a_signal_in_any_phase_of_a_master_task_interrupts_the_build_and_cancels_the_children(
    phase: str, seam: dict[str, int]
) -> None:
    handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    for rep in range(REPS):
        signum = signal.SIGINT if rep % 2 == 0 else signal.SIGTERM
        _children_running.clear()
        _ran.clear()
        task = Signalled(name=f"{phase}-{rep}", phase=phase, signum=signum)
        bullets = [Bullet(name=f"{phase}-{rep}-b{i}") for i in range(BULLETS)]
        root = Join(parents=[*bullets, task])

        def behaviour(launch: Launch, ex: FakeExecutor) -> None:
            if len(ex.launches) == BULLETS:
                _children_running.set()
            return None  # runs until cancelled

        fake = FakeExecutor(ids(*bullets, task, root), behaviour)
        if phase != "inside":
            seam[phase] = signum
        with pytest.raises(Interrupted) as e:
            Kannon(executor=fake, max_parallel=BULLETS).build(root)
        assert e.value.signum == signum, (phase, rep)
        assert sorted(fake.cancelled) == sorted(launch.key for launch in fake.launches), (phase, rep)
        assert len(fake.launches) == BULLETS and fake.live_keys() == [], (phase, rep)
        result = e.value.result
        assert result is not None and result.cancelled
        statuses = {r.family: r.status for r in result.tasks.values() if r.family != "Signalled"}
        assert statuses == {"Bullet": Status.CANCELLED, "Join": Status.CANCELLED}, (phase, rep)
        mine = result.tasks[task.make_unique_id()]
        if phase == "after":
            assert mine.status is Status.SUCCEEDED  # it had finished: its output is real
        else:
            assert mine.status is Status.CANCELLED, (phase, rep, mine)
        assert _ran == ([] if phase == "before" else [task.name]), (phase, rep)  # "before": its code never ran
        assert seam == {}, "the seam was never reached"
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # restored
