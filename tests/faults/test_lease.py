"""The run lease on the local backend, with real master processes (`kannon build`): a duplicate master harms
nothing, two masters started together run once, and a SIGKILLed master's lease is free for the rerun at once."""

from __future__ import annotations

import signal
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import Master, wait_until

PIPELINE = '''
import os, time
import kannon, luigi


class Gated(kannon.TaskOnBullet[str]):
    """Runs while the gate file exists."""

    name = luigi.Parameter()
    gate = luigi.Parameter(significant=False)

    def run(self) -> None:
        open(os.path.join(os.path.dirname(self.gate), self.name + ".started"), "a").write(f"{os.getpid()}\\n")
        while os.path.exists(self.gate):
            time.sleep(0.02)
        self.dump(self.name)


def root():
    return Gated(name="g", gate=os.environ["LEASE_GATE"])
'''


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    (tmp_path / "leasepipe.py").write_text(textwrap.dedent(PIPELINE))
    gate = tmp_path / "gate"
    gate.touch()
    yield tmp_path, {"LEASE_GATE": str(gate)}


def start(workdir: Path, env: dict[str, str], name: str, mode: str = "spawn") -> Master:
    return Master(workdir, "leasepipe.py:root", ["--local-mode", mode], env, name=name)


def child_started(workdir: Path) -> list[str]:
    path = workdir / "g.started"
    return path.read_text().split() if path.exists() else []


def test_a_second_master_is_refused_naming_the_holder_and_the_first_is_unharmed(
    pipeline: tuple[Path, dict[str, str]],
) -> None:
    workdir, env = pipeline
    first = start(workdir, env, "first")
    try:
        wait_until(lambda: child_started(workdir) or first.proc.poll() is not None, 120, "the first master's child")
        assert first.proc.poll() is None, first.output()
        second = start(workdir, env, "second")
        try:
            code = second.wait(timeout=120)
            out = second.output()
            assert code == 2, out
            assert f"host {socket.gethostname()} pid {first.pid} (invocation " in out, out
            assert "Traceback" not in out
            lines = [line for line in out.splitlines() if "another kannon master" in line]
            assert len(lines) == 1, out
        finally:
            second.stop()
        # the first master and its child are untouched: the child still runs, then finishes normally
        assert first.proc.poll() is None and len(child_started(workdir)) == 1
        (workdir / "gate").unlink()
        assert first.wait(timeout=120) == 0, first.output()
        assert "cancelled" not in first.output()
    finally:
        first.stop()


def test_two_masters_started_at_the_same_moment_run_once(pipeline: tuple[Path, dict[str, str]]) -> None:
    workdir, env = pipeline
    masters = [start(workdir, env, "a"), start(workdir, env, "b")]
    try:
        loser = wait_until(lambda: next((m for m in masters if m.proc.poll() is not None), None), 120,
                           "one of the two masters to give up")  # fmt: skip
        winner = masters[1 - masters.index(loser)]
        assert loser.wait() == 2, loser.output()
        assert f"pid {winner.pid} " in loser.output()
        wait_until(lambda: child_started(workdir), 120, "the winner's child")
        (workdir / "gate").unlink()
        assert winner.wait(timeout=120) == 0, winner.output()
        assert len(child_started(workdir)) == 1  # the task ran once
    finally:
        for m in masters:
            m.stop()


@pytest.mark.parametrize("mode", ["fork", "spawn"])  # fork: the zygote and its children must not keep the lease
def test_a_sigkilled_holders_lease_is_taken_by_the_rerun_at_once(pipeline: tuple[Path, dict[str, str]],
                                                                  mode: str) -> None:  # fmt: skip
    workdir, env = pipeline
    first = start(workdir, env, "first", mode)
    try:
        wait_until(lambda: child_started(workdir) or first.proc.poll() is not None, 120, "the first master's child")
        first.signal(signal.SIGKILL)
        first.wait(timeout=60)
        (workdir / "gate").unlink()
        rerun = start(workdir, env, "rerun", mode)  # no waiting for the lease: the kernel freed it with the holder
        try:
            assert rerun.wait(timeout=180) == 0, rerun.output()
            assert "another kannon master" not in rerun.output()
        finally:
            rerun.stop()
        run_ids = {e.get("run_id") for m in ("first", "rerun")
                   for e in _events(workdir / f"{m}.events.jsonl") if e.get("kind") == "run_started"}  # fmt: skip
        assert len(run_ids) == 1, run_ids  # the same run: the rerun is the re-attach, not another pipeline
    finally:
        first.stop()


def _events(path: Path) -> list[dict[str, object]]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
