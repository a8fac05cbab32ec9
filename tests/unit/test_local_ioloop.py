"""The local backend's I/O thread: one thread for every child's pipe and timer, which nothing may stop early."""

from __future__ import annotations

import os
import threading

import pytest

from kannon.backends._ioloop import IOLoop


def test_a_failing_callback_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    io = IOLoop()
    done = threading.Event()
    got: list[bytes] = []
    r, w = os.pipe()

    def boom() -> None:
        raise RuntimeError("a broken callback")

    def on_readable() -> None:
        got.append(os.read(r, 100))
        io.remove_reader(r)
        done.set()

    try:
        io.call_later(0, boom)
        io.add_reader(r, on_readable)
        os.write(w, b"still served")
        assert done.wait(timeout=30)
    finally:
        io.stop()
        os.close(w)
        os.close(r)
    assert got == [b"still served"]
    assert "an I/O callback failed" in caplog.text


def test_timers_fire_in_order_and_stop_ends_the_thread() -> None:
    io = IOLoop()
    fired: list[int] = []
    done = threading.Event()
    io.call_later(0.02, lambda: fired.append(2))
    io.call_later(0, lambda: fired.append(1))
    io.call_later(0.04, done.set)
    assert done.wait(timeout=30)
    io.stop()
    assert fired == [1, 2]
    assert not io._thread.is_alive()
