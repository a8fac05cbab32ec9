"""A rerun on the same host takes over the Kubernetes run lease of a master that was SIGKILLed, without waiting
for the lease to run out; anything it cannot prove dead keeps its lease until expiry."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from kannon.backends.kubernetes.lease import holder_gone, holder_identity


def test_a_dead_master_on_this_host_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_NAME", raising=False)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: its pid names no process now
    identity = f"host {socket.gethostname()} pid {proc.pid} (invocation x)"
    assert holder_gone(identity)


def test_a_live_master_or_another_host_is_not_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_NAME", raising=False)
    assert not holder_gone(holder_identity("me"))  # this very process
    assert not holder_gone(f"host not-{socket.gethostname()} pid 999999999 (invocation x)")
    assert not holder_gone("someone else")
    monkeypatch.setenv("POD_NAME", "master-pod-abc")  # in a cluster the pod name is the host
    assert not holder_gone(f"host master-pod-xyz pid {os.getpid() + 10**6} (invocation x)")
