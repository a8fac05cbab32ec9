"""``python -m kannon run-pack`` with real bullets: each member is a hand-off spec (inline, in the member's own
``KANNON_SPEC``) run by kannon.child in a process forked from the runner."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kannon import childresult, exitcodes, handoff, storage
from kannon.pack.protocol import PACK_ENV, Member, MemberEnd, encode, split
from tests.support.procs import children_of, gone, wait_until
from tests.support.tasks import Bullet

TIMEOUT = 180  # for a whole pack on a loaded 2-core machine; a healthy one takes a second or two


def member(task: Any) -> Member:
    """The task as a backend would hand it over, its spec inline in the member's own environment."""
    data = handoff.Encoder().spec(task, "pack-test", handoff.luigi_config_snapshot())
    args = handoff.child_args("env:KANNON_SPEC", handoff.unique_id(task), hashlib.sha256(data).hexdigest())
    return Member(args=args, env={"KANNON_SPEC": storage.encode_inline(data), "KANNON_ATTEMPT": "1"})


def start(members: list[Member], tmp_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, PACK_ENV: encode(members)}
    return subprocess.Popen([sys.executable, "-m", "kannon", "run-pack"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def finish(proc: subprocess.Popen[str], count: int) -> tuple[list[list[str]], dict[int, MemberEnd], list[str], str]:
    out, err = proc.communicate(timeout=TIMEOUT)
    assert out.endswith("\n"), out
    members, ends, other = split(out.split("\n")[:-1], count)
    for i in range(count):  # a member's end comes after everything it wrote
        lines = out.split("\n")
        end_at = next(n for n, line in enumerate(lines) if line.startswith(f"kannon-pack: member {i} ended "))
        assert not any(line.startswith(f"[{i}] ") for line in lines[end_at:]), out
    return members, ends, other, err


def run_pack(members: list[Member], tmp_path: Path) -> tuple[int, list[list[str]], dict[int, MemberEnd], list[str]]:
    proc = start(members, tmp_path)
    lines, ends, other, err = finish(proc, len(members))
    assert err == "", err
    return proc.returncode, lines, ends, other


def record_of(end: MemberEnd) -> childresult.ChildResult:
    assert end.record is not None
    record = childresult.parse(end.record)
    assert record is not None, end.record
    return record


def pid_of(tmp_path: Path, name: str) -> int:
    """The pid a Bullet with ``counter_dir`` noted when its run() started (0 before)."""
    path = tmp_path / f"{name}.attempts"
    text = path.read_text() if path.exists() else ""
    return int(text.split()[0]) if text.endswith("\n") else 0


def wait_for_pid(tmp_path: Path, name: str) -> int:
    return wait_until(lambda: pid_of(tmp_path, name), 120, f"{name}'s run() to start")


def test_three_bullets_run_side_by_side_each_reported_on_its_own(tmp_path: Path) -> None:
    # A ring: each waits for the next one to have started, which only members running at once can do.
    names = ["alpha", "bravo", "charlie"]
    started = [str(tmp_path / f"{n}.started") for n in names]
    tasks = [Bullet(name=n, marker=f"marker-of-{n}", started_file=started[k], wait_file=started[(k + 1) % 3])
             for k, n in enumerate(names)]  # fmt: skip
    code, lines, ends, other = run_pack([member(t) for t in tasks], tmp_path)
    assert code == 0
    assert other == [], other
    for i, (name, task) in enumerate(zip(names, tasks)):
        assert task.output().load() == f"{name}()"
        assert f"marker-of-{name}" in lines[i]
        for j in set(range(3)) - {i}:
            assert not any(f"marker-of-{name}" in line or f"Bullet(name={name}," in line for line in lines[j])
        assert any(f"running Bullet(name={name}" in line for line in lines[i]), lines[i]
        assert ends[i].code == 0
        record = record_of(ends[i])
        assert (record.task, record.outcome, record.exit_code) == (handoff.unique_id(task), "ok", 0)
        assert record.usage is not None and record.usage.output_bytes > 0


def test_a_failing_member_is_reported_as_its_own_and_the_others_succeed(tmp_path: Path) -> None:
    bad = Bullet(name="bad", fail_times=1, counter_dir=str(tmp_path))
    good = [Bullet(name="good1"), Bullet(name="good2")]
    members = [member(good[0]), member(bad), member(good[1]), Member(args=("no-such-command",), env={})]
    code, lines, ends, _other = run_pack(members, tmp_path)
    assert code == 0, "the members' outcomes are reported per member, not as the runner's exit code"
    assert [ends[i].code for i in range(4)] == [0, exitcodes.TASK_FAILED, 0, 2]
    failed = record_of(ends[1])
    assert (failed.task, failed.outcome) == (handoff.unique_id(bad), "TaskFailed")
    assert any("planned failure of bad" in line for line in lines[1])
    assert not any("planned failure" in line for i in (0, 2, 3) for line in lines[i])
    assert [record_of(ends[i]).outcome for i in (0, 2)] == ["ok", "ok"]
    assert all(t.output().exists() for t in good) and not bad.output().exists()
    assert ends[3].record is None and lines[3] == [
        "kannon run-pack: unknown member command 'no-such-command' (a member runs run-task)"]  # fmt: skip


def test_a_member_killed_by_sigkill_ends_137_without_a_record_and_the_others_are_unaffected(tmp_path: Path) -> None:
    victim = Bullet(name="victim", sleep=300, counter_dir=str(tmp_path))
    others = [Bullet(name="other1"), Bullet(name="other2")]
    proc = start([member(others[0]), member(victim), member(others[1])], tmp_path)
    try:
        pid = wait_for_pid(tmp_path, "victim")
        assert pid in children_of(proc.pid), "a member is a child of the runner"
        os.kill(pid, signal.SIGKILL)
        lines, ends, _other, err = finish(proc, 3)
    finally:
        proc.kill()
    assert proc.returncode == 0 and err == ""
    assert ends[1] == MemberEnd(code=128 + signal.SIGKILL, record=None)
    assert [ends[0].code, ends[2].code] == [0, 0]
    assert all(t.output().exists() for t in others)
    assert any("running Bullet(name=victim" in line for line in lines[1])


def test_sigterm_to_the_runner_ends_every_member_and_exits_143(tmp_path: Path) -> None:
    names = ["s0", "s1", "s2"]
    proc = start([member(Bullet(name=n, sleep=300, counter_dir=str(tmp_path))) for n in names], tmp_path)
    try:
        pids = [wait_for_pid(tmp_path, n) for n in names]
        assert set(pids) <= set(children_of(proc.pid))
        proc.send_signal(signal.SIGTERM)
        _lines, ends, _other, err = finish(proc, 3)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err == ""
    assert sorted(ends) == [0, 1, 2]
    assert all(end.code == 128 + signal.SIGTERM for end in ends.values()), ends
    assert all(gone(pid) for pid in pids), [pid for pid in pids if not gone(pid)]


@pytest.mark.parametrize(
    ("pack", "argv", "says"),
    [
        (None, [], "KANNON_PACK is not set"),
        ("garbage", [], "KANNON_PACK: not JSON"),
        ('{"v": 2, "members": [{"args": ["run-task"], "env": {}}]}', [], "KANNON_PACK: version 2"),
        ('{"v": 1, "members": [{"args": [], "env": {}}]}', [], "member 0: 'args'"),
        (encode([Member(args=("run-task",), env={})]), ["--extra"], "takes no arguments"),
    ],
)
def test_a_bad_pack_is_one_line_and_exit_2(tmp_path: Path, pack: str | None, argv: list[str], says: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != PACK_ENV}
    if pack is not None:
        env[PACK_ENV] = pack
    proc = subprocess.run([sys.executable, "-m", "kannon", "run-pack", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("kannon run-pack: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr
