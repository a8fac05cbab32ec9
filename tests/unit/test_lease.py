"""The default run lease (kannon/lease.py, Executor.acquire_lease): flock semantics the fault tests rely on."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from kannon.backends.base import LeaseHeld, RunInfo
from kannon.lease import FileLease, LeaseBusy
from tests.unit.test_scheduler import FakeExecutor


def test_a_second_holder_is_refused_with_the_first_named(tmp_path: Path) -> None:
    run = RunInfo("abc123", tmp_path / "runs" / "abc123", invocation_id="20261203T120102Z-3fa9c1")
    first, second = FakeExecutor({}), FakeExecutor({})
    first.acquire_lease(run, None)
    try:
        with pytest.raises(LeaseHeld) as e:
            second.acquire_lease(run, None)
        assert e.value.holder.startswith(f"host {socket.gethostname()} pid {os.getpid()} "
                                         "(invocation 20261203T120102Z-3fa9c1) since 20")  # fmt: skip
        assert (tmp_path / "runs" / "abc123.lease").exists()  # beside the run directory
    finally:
        first.release_lease()
        first.release_lease()  # idempotent
    second.acquire_lease(run, None)
    second.release_lease()


def test_waiting_for_the_lease_takes_it_when_the_holder_lets_go(tmp_path: Path) -> None:
    holder = FileLease(tmp_path / "r.lease")
    holder.acquire("inv-1", None)
    waiting = FileLease(tmp_path / "r.lease")
    with pytest.raises(LeaseBusy):
        waiting.acquire("inv-2", 0.1)  # waits a little, then gives up
    threading.Timer(0.2, holder.release).start()
    waiting.acquire("inv-2", 60)  # returns as soon as the holder released
    assert '"invocation": "inv-2"' in (tmp_path / "r.lease").read_text()
    waiting.release()


def test_a_forked_child_does_not_keep_the_lease_alive(tmp_path: Path) -> None:
    # The local fork server is forked from the master after the lease is taken: its copy of the descriptor must
    # not keep a dead master's lock (flock locks belong to the open file, shared across fork).
    lease = FileLease(tmp_path / "r.lease")
    lease.acquire("inv-1", None)
    r, w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child says it is up (at-fork hooks done), then waits to be told to exit
        os.close(w)
        os.write(ready_w, b"u")
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"u"
    os.close(ready_r)
    try:
        lease.release()  # the master is gone; its forked child still lives
        other = FileLease(tmp_path / "r.lease")
        other.acquire("inv-2", None)
        other.release()
    finally:
        os.write(w, b"x")
        os.close(w)
        os.waitpid(pid, 0)
