"""The Kubernetes attempt state machine (kannon/backends/kubernetes/attempt.py), without threads or a server."""

from __future__ import annotations

from itertools import product
from pathlib import Path

import pytest

from kannon.backends.base import Launch
from kannon.backends.kubernetes.attempt import Attempt, BadTransition, Phase
from kannon.hints import Hints

ALLOWED = {
    (Phase.CREATING, Phase.PENDING), (Phase.CREATING, Phase.CANCELLING), (Phase.CREATING, Phase.ENDING),
    (Phase.PENDING, Phase.RUNNING), (Phase.PENDING, Phase.CANCELLING), (Phase.PENDING, Phase.ENDING),
    (Phase.RUNNING, Phase.CANCELLING), (Phase.RUNNING, Phase.ENDING),
    (Phase.RUNNING, Phase.PENDING),  # Kueue re-suspended the Job (preemption): queued by admission again
    (Phase.CANCELLING, Phase.ENDING), (Phase.ENDING, Phase.DONE),
}  # fmt: skip


def attempt(phase: Phase = Phase.CREATING) -> Attempt:
    launch = Launch("k-1", "run", "0" * 32, "Fam", 1, ("run-task",), {}, Hints(), Path("/nonexistent/log"))
    a = Attempt(launch, "kannon-fam-1", 0.0)
    a.phase = phase
    return a


@pytest.mark.parametrize(("src", "dst"), list(product(Phase, Phase)))
def test_only_the_documented_transitions_are_allowed(src: Phase, dst: Phase) -> None:
    a = attempt(src)
    if (src, dst) in ALLOWED:
        a.to(dst)
        assert a.phase is dst
    else:
        with pytest.raises(BadTransition):
            a.to(dst)
        assert a.phase is src


def test_end_claims_an_attempt_exactly_once() -> None:
    for phase in (Phase.CREATING, Phase.PENDING, Phase.RUNNING, Phase.CANCELLING):
        a = attempt(phase)
        assert a.end() and a.phase is Phase.ENDING
        assert not a.end()  # a second terminal step (a late event, a timer) finds it taken
    assert not attempt(Phase.DONE).end()


def test_a_failed_cancel_returns_the_attempt_to_the_watches() -> None:
    a = attempt(Phase.RUNNING)
    a.to(Phase.CANCELLING)
    a.cancel_failed(Phase.RUNNING)
    assert a.phase is Phase.RUNNING
    b = attempt(Phase.RUNNING)
    b.to(Phase.CANCELLING)
    b.end()  # the Job ended meanwhile: the failed cancel must not revive it
    b.cancel_failed(Phase.RUNNING)
    assert b.phase is Phase.ENDING


def test_where_names_the_pod_and_how_the_job_came_to_be() -> None:
    a = attempt(Phase.PENDING)
    assert a.where == "job kannon-fam-1" and not a.started
    a.pod_name = "kannon-fam-1-abcde"
    assert a.where == "pod kannon-fam-1-abcde" and a.started
    a.adopted = "left running by an earlier master"
    assert a.where == "pod kannon-fam-1-abcde (adopted)"
    a.adopted, a.replaced = None, "Job x runs a different command"
    assert a.where == "pod kannon-fam-1-abcde (replaced a changed Job)"
