"""The master side of packs: an :class:`Executor` around another that runs several ready bullets in one child.

``launch()`` only buffers. The loop calls :meth:`Packer.flush` when its queue is empty (before it blocks), and the
buffered launches are grouped there: a group of one goes to the inner executor unchanged, so a pipeline whose
bullets become ready one at a time runs exactly as without packs; a larger group of launches that the inner
executor says may share a child (:meth:`Packable.pack_limit`: the same hints, small enough) becomes one *pack
launch* per up to ``size`` members, split evenly. The pack's child (``kannon run-pack``, :mod:`kannon.pack.runner`)
runs the members side by side, so the core's ``max_parallel`` keeps counting bullets. The pack's events are turned
back into the members': ``Queued`` and ``Started`` go to every member; at the pack's ``Finished`` its log is split
into the members' own log files and each member gets its own ``Finished`` from its end line and child-result
record, or, with none (the pod was killed, evicted, never started), the pack's outcome.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from kannon import childresult, exitcodes, logtail
from kannon.backends.base import (
    BackendError,
    Executor,
    ExecutorEvent,
    Finished,
    Launch,
    LogLine,
    Queued,
    Report,
    RunInfo,
    SpecTransport,
    Started,
)
from kannon.hints import Hints
from kannon.pack import protocol
from kannon.pack.protocol import LABEL_PACK

log = logging.getLogger("kannon.pack")

#: seconds close() waits for packs whose members all ended to end by themselves (their runner is exiting)
DRAIN_SECONDS = 10.0
#: seconds a pack runs before a member that ends is reported at once rather than with the others (_member_ended)
EARLY_AFTER = 10.0
#: the pack's ``Launch.family``: Job names read ``<prefix>-pack-...`` in ``kubectl get jobs``
PACK_FAMILY = "pack"


@runtime_checkable
class Packable(Protocol):
    """What an executor implements to have its launches packed."""

    def pack_limit(self, hints: Hints) -> int:
        """How many bullets with ``hints`` one child may run side by side (1: never pack them). A pack's launch
        has the members' hints and says how many they are in ``labels[LABEL_PACK]``: the executor sizes the child
        (its resources summed)."""


@dataclass
class _Pack:
    launch: Launch
    members: list[Launch]
    cancelled: set[str] = field(default_factory=set)
    done: set[int] = field(default_factory=set)  # members whose Finished was emitted (at their end line, live)
    where: str | None = None  # the pack's pod, from its Started
    started: float | None = None  # time.monotonic() at its Started
    waiting: set[int] = field(default_factory=set)  # ended (end line seen), reported at the pack's end or EARLY_AFTER
    timer: threading.Timer | None = None


class Packer(Executor):
    """Packs ready launches for ``inner``: at most ``size`` members per child."""

    def __init__(self, inner: Executor, size: int) -> None:
        super().__init__()
        if not isinstance(inner, Packable):
            raise TypeError(f"the {inner.name} backend does not implement pack_limit")
        if not inner.delivers_secrets:
            raise TypeError(f"the {inner.name} backend does not deliver secrets itself: its packs could not either")
        self.inner = inner
        self._packable: Packable = inner
        self.size = size
        self.name = inner.name  # type: ignore[misc]  # the backend's own name in events and messages
        self.python = inner.python
        self.default_parallelism = inner.default_parallelism
        self._buffered: list[Launch] = []
        self._packs: dict[str, _Pack] = {}  # the pack's key -> pack
        self._pack_of: dict[str, _Pack] = {}  # a member's key -> its pack
        self._plock = threading.Lock()
        self._pack_ended = threading.Condition(self._plock)
        self._holding = 0  # threads handing over members' Finished (_finish_members)

    delivers_secrets = True  # checked in __init__: the inner executor does

    # -- delegated ------------------------------------------------------------------------------------------
    def acquire_lease(self, run: RunInfo, wait: float | None) -> None:
        self.inner.acquire_lease(run, wait)

    def release_lease(self) -> None:
        self.inner.release_lease()

    def start(self, run: RunInfo, report: Report) -> None:
        super().start(run, report)
        self.inner.start(run, self._on_inner)

    def prepare(self, modules: Sequence[str]) -> None:
        self.inner.prepare(modules)

    def validate(self, family: str, hints: Hints) -> list[str]:
        return self.inner.validate(family, hints)

    def submit_limit(self, max_parallel: int) -> int:
        return self.inner.submit_limit(max_parallel)

    def spec_transport(self, size: int) -> SpecTransport:
        return self.inner.spec_transport(size)

    def close(self) -> None:
        # A pack whose members all ended (their end lines came live) is about to end by itself: let it, rather
        # than have the inner executor delete it as a child the run gave up on.
        with self._pack_ended:
            self._pack_ended.wait_for(lambda: not any(len(e.done) == len(e.members) for e in self._packs.values()),
                                      timeout=DRAIN_SECONDS)  # fmt: skip
            timers = [e.timer for e in self._packs.values() if e.timer is not None]
        for timer in timers:
            timer.cancel()
        self.inner.close()

    # -- launch ---------------------------------------------------------------------------------------------
    def launch(self, launch: Launch) -> None:
        if launch.child_args[:1] != ("run-task",):
            raise ValueError(f"only run-task launches can be packed, not {launch.child_args[:1]}")
        self.track(launch.key)
        with self._plock:
            self._buffered.append(launch)

    def flush(self) -> list[tuple[str, Exception]]:
        with self._plock:
            if self._holding:  # members' Finished are being handed over: the last one brings the loop back
                return []
            buffered, self._buffered = self._buffered, []
        failures: list[tuple[str, Exception]] = []
        for group in self._groups(buffered):
            try:
                if len(group) == 1:
                    self.inner.launch(group[0])
                else:
                    self._launch_pack(group)
            except Exception as e:
                failures += [(m.key, e) for m in group]
                with self._cond:
                    self._live.difference_update(m.key for m in group)
        return failures

    def _groups(self, launches: list[Launch]) -> list[list[Launch]]:
        """Launches that may share a child, in chunks of at most their pack limit, split evenly."""
        by_hints: dict[str, list[Launch]] = {}
        for launch in launches:
            by_hints.setdefault(repr(launch.hints), []).append(launch)
        groups: list[list[Launch]] = []
        for same in by_hints.values():
            limit = min(self.size, self._packable.pack_limit(same[0].hints))  # once per hints, not per launch
            chunks = math.ceil(len(same) / limit)
            step = len(same) / chunks
            groups += [same[round(i * step):round((i + 1) * step)] for i in range(chunks)]
        return groups

    def _launch_pack(self, members: list[Launch]) -> None:
        first = members[0]
        common = {k: v for k, v in first.env.items() if all(m.env.get(k) == v for m in members[1:])}
        encoded = protocol.encode([protocol.Member(m.child_args, {k: v for k, v in m.env.items() if k not in common})
                                   for m in members])  # fmt: skip
        pack = Launch(
            key=f"{first.key}-pack", run_id=first.run_id, task_id=first.task_id, family=PACK_FAMILY,
            attempt=first.attempt, child_args=("run-pack",), env={**common, protocol.PACK_ENV: encoded},
            hints=first.hints,
            log_path=first.log_path.with_name(f"pack-{first.log_path.name}"),
            labels={**first.labels, LABEL_PACK: str(len(members))},
        )  # fmt: skip
        entry = _Pack(pack, members)
        with self._plock:
            self._packs[pack.key] = entry
            for m in members:
                self._pack_of[m.key] = entry
        try:
            self.inner.launch(pack)
        except Exception:
            with self._plock:
                self._forget(entry)
            raise

    def _forget(self, entry: _Pack) -> None:
        self._packs.pop(entry.launch.key, None)
        for m in entry.members:
            self._pack_of.pop(m.key, None)
        self._pack_ended.notify_all()

    # -- cancel ---------------------------------------------------------------------------------------------
    def cancel(self, key: str) -> None:
        with self._plock:
            buffered = next((b for b in self._buffered if b.key == key), None)
            if buffered is not None:
                self._buffered.remove(buffered)
            entry = self._pack_of.get(key)
            if entry is not None:
                entry.cancelled.add(key)
                whole = all(m.key in entry.cancelled or i in entry.done for i, m in enumerate(entry.members))
        if buffered is not None:  # never handed over: nothing runs
            self.emit(Finished(key, None, "cancelled", "Cancelled"))
        elif entry is None:
            self.inner.cancel(key)
        elif whole:  # a pod cannot stop one member: the pack goes when all of them are cancelled
            self.inner.cancel(entry.launch.key)

    def cancel_all(self, timeout: float = 30.0) -> list[str]:
        with self._plock:
            buffered, self._buffered = self._buffered, []
            for entry in self._packs.values():
                entry.cancelled.update(m.key for m in entry.members)
        for launch in buffered:
            self.emit(Finished(launch.key, None, "cancelled", "Cancelled"))
        self.inner.cancel_all(timeout)  # its Finished events reach _on_inner before it returns
        return self.live_keys()

    # -- the inner executor's events --------------------------------------------------------------------------
    def _on_inner(self, event: ExecutorEvent) -> None:
        with self._plock:
            entry = self._packs.get(event.key)
            if entry is not None and isinstance(event, Finished):
                self._forget(entry)
        if entry is None:
            self.emit(event)
        elif isinstance(event, Started):
            entry.where, entry.started = event.where, time.monotonic()
            for m in entry.members:
                self.emit(Started(m.key, event.where, event.at))
        elif isinstance(event, Queued):
            for m in entry.members:
                self.emit(Queued(m.key, event.queued, event.reason, event.at))
        elif isinstance(event, LogLine):
            index, text = protocol.parse_line(event.line)
            if index is not None and index < len(entry.members):
                self.emit(LogLine(entry.members[index].key, text))
            elif index is None and (end := protocol.parse_end(event.line)) is not None:
                self._member_ended(entry, end[0])
        else:
            with self._plock:
                timer, entry.timer = entry.timer, None
            if timer is not None:
                timer.cancel()
            self._finish_members(entry, event)

    def _member_ended(self, entry: _Pack, index: int) -> None:
        """A member's end line came while its pod runs on (the log is followed). In a pack that has run
        EARLY_AFTER seconds, the member is finished at once: its slot and its dependents need not wait for the
        slowest member. In a younger one it is reported with the others at the pack's end, or at EARLY_AFTER:
        members that end together free their slots together, and the launches that follow fill a pack again."""
        now = time.monotonic()
        ran = now - entry.started if entry.started is not None else 0.0
        if ran >= EARLY_AFTER:
            self._finish_members(entry, None, [index])
            return
        with self._plock:
            entry.waiting.add(index)
            if entry.timer is not None or entry.launch.key not in self._packs:
                return
            entry.timer = threading.Timer(EARLY_AFTER - ran, self._release, (entry,))
            entry.timer.daemon = True
            entry.timer.start()

    def _release(self, entry: _Pack) -> None:
        with self._plock:
            waiting, entry.timer = sorted(entry.waiting), None
        self._finish_members(entry, None, waiting)  # the log file holds their lines: all come before their end

    def _finish_members(self, entry: _Pack, pack: Finished | None, indexes: list[int] | None = None) -> None:
        """Emit the Finished of the members not yet done: at the pack's end (``pack``) all of them, else those of
        ``indexes`` whose end line is in the pack's log file."""
        members = entry.members
        try:  # split on "\n" only (kannon.pack.protocol says why)
            lines = entry.launch.log_path.read_text(encoding="utf-8", errors="replace").split("\n")
        except OSError:
            lines = []
        if lines and not lines[-1]:
            lines.pop()
        own, ends, runner = protocol.split(lines, len(members))
        with self._plock:
            wanted = range(len(members)) if indexes is None else indexes
            todo = [i for i in wanted if i < len(members) and i not in entry.done and (pack is not None or i in ends)]
            entry.done.update(todo)
            self._holding += 1
        events = []
        for i in todo:
            member = members[i]
            try:
                _write_log(member.log_path, [*own[i], *([] if i in ends else runner)])
            except OSError as e:
                log.warning("could not write the log of %s: %s", member.key, e)
            where = pack.where if pack is not None else entry.where
            events.append(self._member_finished(member, ends.get(i), pack, tuple(own[i][-20:]),
                                                member.key in entry.cancelled, where))  # fmt: skip
        # The loop may take the first of these before the last is handed over; until then flush() launches
        # nothing, so that what the freed slots start is packed together. The last one wakes the loop again.
        try:
            for event in events[:-1]:
                self.emit(event)
        finally:
            with self._plock:
                self._holding -= 1
        if events:
            self.emit(events[-1])

    def _member_finished(self, member: Launch, end: protocol.MemberEnd | None, pack: Finished | None,
                         raw: tuple[str, ...], cancelled: bool, where: str | None) -> Finished:  # fmt: skip
        tail = logtail.read_tail(member.log_path)
        if end is None:  # the pack ended before this member did: its outcome is the pack's
            assert pack is not None
            if cancelled:
                return Finished(member.key, pack.exit_code, "cancelled", "Cancelled", log_tail=tail, where=where)
            if pack.ok:
                return Finished(member.key, None, "the pack's child ended without this member's outcome",
                                "PackLost", True, tail, where)  # fmt: skip
            return dataclasses.replace(pack, key=member.key, log_tail=tail, result=None)
        record = childresult.parse_for(end.record, member) if end.record else None  # None: the exit code decides
        if end.code == 0:
            return Finished(member.key, 0, log_tail=tail, where=where, result=record)
        return Finished(member.key, end.code, exitcodes.describe(end.code, raw), exitcodes.failure_class(end.code),
                        log_tail=tail, where=where, result=record)  # fmt: skip


def _write_log(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8", errors="replace") as f:
        f.writelines(line + "\n" for line in lines)


def pack_executor(inner: Executor, size: int) -> Executor:
    """``inner`` with packs of up to ``size`` bullets when it can run them (size > 1), else ``inner`` itself."""
    if size <= 1 or not isinstance(inner, Packable):
        return inner
    if not inner.delivers_secrets:
        raise BackendError(f"the {inner.name} backend cannot pack bullets: it does not deliver secrets itself")
    return Packer(inner, size)
