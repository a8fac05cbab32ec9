"""kannon.pack.Packer's own bookkeeping, around an in-memory inner executor (the pods' side is tested on the
emulator, tests/e2e/k8s/test_k8s_packs.py): which launches share a child, how evenly, and what a cancel or a
failed launch does to launches still held back."""

from __future__ import annotations

from pathlib import Path

import pytest

from kannon.backends.base import BackendError, Executor, ExecutorEvent, Finished, Launch, LogLine, RunInfo, Started
from kannon.hints import Hints
from kannon.pack import packer as packer_module
from kannon.pack import protocol
from kannon.pack.packer import Packer, pack_executor
from kannon.pack.protocol import LABEL_PACK


class Inner(Executor):
    name = "fake"
    delivers_secrets = True

    def __init__(self, limit: int = 8, fail: Exception | None = None) -> None:
        super().__init__()
        self.limit, self.fail = limit, fail
        self.launched: list[Launch] = []
        self.cancelled: list[str] = []

    def pack_limit(self, hints: Hints) -> int:
        return 1 if hints.gpu else self.limit

    def launch(self, launch: Launch) -> None:
        if self.fail is not None:
            raise self.fail
        self.launched.append(launch)

    def cancel(self, key: str) -> None:
        self.cancelled.append(key)


def _launch(tmp_path: Path, n: int, hints: Hints | None = None) -> Launch:
    return Launch(key=f"t{n}-1", run_id="run", task_id=f"{n:032x}", family="Task", attempt=1,
                  child_args=("run-task", "--spec", "env:KANNON_SPEC", "--task-id", f"{n:032x}", "--sha256", "0"),
                  env={"KANNON_TASK_ID": f"{n:032x}", "KANNON_SPEC": f"spec-{n}", "SHARED": "yes"},
                  hints=hints or Hints(), log_path=tmp_path / f"Task-{n}-1.log")  # fmt: skip


def _started(inner: Inner, packer: Packer, tmp_path: Path) -> list[ExecutorEvent]:
    events: list[ExecutorEvent] = []
    packer.start(RunInfo("run", tmp_path), events.append)
    return events


def test_ten_ready_launches_with_a_limit_of_eight_make_two_packs_of_five(tmp_path: Path) -> None:
    inner = Inner(limit=8)
    packer = Packer(inner, size=8)
    _started(inner, packer, tmp_path)
    for n in range(10):
        packer.launch(_launch(tmp_path, n))
    assert inner.launched == []  # held back until the core has handed over everything ready
    assert packer.flush() == []
    assert [len(protocol.decode(p.env[protocol.PACK_ENV])) for p in inner.launched] == [5, 5]
    first = inner.launched[0]
    assert first.child_args == ("run-pack",) and first.labels[LABEL_PACK] == "5"
    assert first.env["SHARED"] == "yes" and "KANNON_SPEC" not in first.env  # only what differs is per member
    members = protocol.decode(first.env[protocol.PACK_ENV])
    assert [m.env["KANNON_SPEC"] for m in members] == [f"spec-{n}" for n in range(5)]
    assert members[0].args[0] == "run-task"
    assert first.hints == Hints()  # the members': the executor sizes the pod by labels[LABEL_PACK]


def test_a_lone_launch_and_unpackable_ones_go_to_the_inner_executor_unchanged(tmp_path: Path) -> None:
    inner = Inner()
    packer = Packer(inner, size=4)
    _started(inner, packer, tmp_path)
    alone = _launch(tmp_path, 0)
    gpus = [_launch(tmp_path, n, Hints(gpu=1)) for n in (1, 2)]
    other = _launch(tmp_path, 3, Hints(cpu=2))  # other hints than the first: a group of its own
    for launch in (alone, *gpus, other):
        packer.launch(launch)
    packer.flush()
    assert sorted(inner.launched, key=lambda x: x.key) == sorted([alone, *gpus, other], key=lambda x: x.key)


def test_members_get_the_packs_start_and_a_cancel_of_a_held_back_launch_ends_it_at_once(tmp_path: Path) -> None:
    inner = Inner()
    packer = Packer(inner, size=4)
    events = _started(inner, packer, tmp_path)
    for n in range(3):
        packer.launch(_launch(tmp_path, n))
    packer.cancel("t2-1")  # still held back: nothing was started for it
    assert [(e.key, e.failure_class) for e in events if isinstance(e, Finished)] == [("t2-1", "Cancelled")]
    packer.flush()
    (pack,) = inner.launched
    packer._on_inner(Started(pack.key, "pod p"))
    assert [(e.key, e.where) for e in events if isinstance(e, Started)] == [("t0-1", "pod p"), ("t1-1", "pod p")]
    packer.cancel("t0-1")
    assert inner.cancelled == []  # a pod cannot stop one member
    packer.cancel("t1-1")
    assert inner.cancelled == [pack.key]  # all its members are cancelled: the pack goes


def _one_pack(tmp_path: Path, members: int) -> tuple[Packer, Inner, list[ExecutorEvent], Launch]:
    """A Packer (size 4) around an Inner, ``members`` launches flushed into its one pack."""
    inner = Inner()
    packer = Packer(inner, size=4)
    events = _started(inner, packer, tmp_path)
    for n in range(members):
        packer.launch(_launch(tmp_path, n))
    packer.flush()
    (pack,) = inner.launched
    return packer, inner, events, pack


def test_a_pack_split_from_its_log_gives_each_member_its_own_outcome(tmp_path: Path) -> None:
    packer, _inner, events, pack = _one_pack(tmp_path, 3)
    pack.log_path.write_bytes(b"".join([
        protocol.member_line(0, b"hello from 0\n"), protocol.member_line(1, b"kannon-child: the task raised\n"),
        protocol.end_line(0, 0, None), protocol.end_line(1, 6, None), b"runner: member 2 lost\n",
    ]))  # fmt: skip
    packer._on_inner(Finished(pack.key, 137, "killed", "OOMKilled", where="pod p"))
    done = {e.key: e for e in events if isinstance(e, Finished)}
    assert done["t0-1"].ok and done["t0-1"].where == "pod p"
    assert (done["t1-1"].exit_code, done["t1-1"].failure_class) == (6, "TaskFailed")
    assert done["t1-1"].reason == "the task raised"
    assert (done["t2-1"].exit_code, done["t2-1"].failure_class) == (137, "OOMKilled")  # the pack's outcome
    assert (tmp_path / "Task-0-1.log").read_text() == "hello from 0\n"
    assert "runner: member 2 lost" in (tmp_path / "Task-2-1.log").read_text()
    assert packer.live_keys() == []


def test_a_failed_pack_launch_fails_each_member_with_the_same_error(tmp_path: Path) -> None:
    inner = Inner(fail=BackendError("no permission"))
    packer = Packer(inner, size=4)
    _started(inner, packer, tmp_path)
    for n in range(2):
        packer.launch(_launch(tmp_path, n))
    failures = packer.flush()
    assert [(k, str(e)) for k, e in failures] == [("t0-1", "no permission"), ("t1-1", "no permission")]
    assert packer.live_keys() == []


def test_packing_is_off_for_size_one_and_for_backends_that_cannot_pack(tmp_path: Path) -> None:
    inner = Inner()
    assert pack_executor(inner, 1) is inner
    assert isinstance(pack_executor(inner, 2), Packer)

    class Plain(Executor):
        def launch(self, launch: Launch) -> None: ...
        def cancel(self, key: str) -> None: ...

    plain = Plain()
    assert pack_executor(plain, 8) is plain
    with pytest.raises(ValueError, match="only run-task"):
        Packer(inner, 2).launch(Launch("k", "r", "0" * 32, "F", 1, ("other",), {}, Hints(), tmp_path / "x"))


def _pack_of_two(tmp_path: Path) -> tuple[Packer, Inner, list[ExecutorEvent], Launch]:
    """A started pack of two whose member 0 has ended (its lines and end line in the pack's log)."""
    packer, inner, events, pack = _one_pack(tmp_path, 2)
    packer._on_inner(Started(pack.key, "pod p"))
    pack.log_path.write_bytes(protocol.member_line(0, b"zero\n") + protocol.end_line(0, 0, None))
    return packer, inner, events, pack


def test_in_a_young_pack_a_member_that_ends_is_reported_with_the_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Members that end together free their slots together, so the launches that follow fill a pack again."""
    monkeypatch.setattr(packer_module, "EARLY_AFTER", 3600.0)
    packer, _inner, events, pack = _pack_of_two(tmp_path)
    packer._on_inner(LogLine(pack.key, protocol.end_line(0, 0, None).decode().rstrip("\n")))
    assert not [e for e in events if isinstance(e, Finished)]
    with pack.log_path.open("ab") as f:
        f.write(protocol.member_line(1, b"one\n") + protocol.end_line(1, 0, None))
    packer._on_inner(Finished(pack.key, 0, where="pod p"))
    assert sorted(e.key for e in events if isinstance(e, Finished) and e.ok) == ["t0-1", "t1-1"]


def test_in_a_pack_that_ran_long_a_member_that_ends_is_finished_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(packer_module, "EARLY_AFTER", 0.0)
    packer, _inner, events, pack = _pack_of_two(tmp_path)
    packer._on_inner(LogLine(pack.key, protocol.end_line(0, 0, None).decode().rstrip("\n")))
    assert [(e.key, e.where) for e in events if isinstance(e, Finished)] == [("t0-1", "pod p")]
    assert (tmp_path / "Task-0-1.log").read_text() == "zero\n"
    assert packer.live_keys() == ["t1-1"]


def test_while_a_packs_members_are_handed_over_nothing_is_launched(tmp_path: Path) -> None:
    """The loop may take the first member's Finished, and the launch it frees, before the last is handed over: that
    launch waits for the others, so the next bullets ready together are packed together (a race seen on the real
    control plane: seven pods for the quick-start's three levels of three)."""
    inner = Inner()
    packer = Packer(inner, size=4)
    seen: list[int] = []

    def report(event: ExecutorEvent) -> None:  # the loop: a freed slot launches the next bullet, then it is idle
        if isinstance(event, Finished):
            n = 10 + int(event.key[1])
            packer.launch(_launch(tmp_path, n))
            assert packer.flush() == []
            seen.append(len(inner.launched))

    packer.start(RunInfo("run", tmp_path), report)
    for n in range(2):
        packer.launch(_launch(tmp_path, n))
    packer.flush()
    (pack,) = inner.launched
    pack.log_path.write_bytes(protocol.end_line(0, 0, None) + protocol.end_line(1, 0, None))
    packer._on_inner(Finished(pack.key, 0, where="pod p"))
    assert seen[0] == 1  # the launch freed by the first member was held back
    assert len(inner.launched) == 2 and inner.launched[1].labels[LABEL_PACK] == "2"  # both, in one pack
