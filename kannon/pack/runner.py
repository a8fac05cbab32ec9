"""``python -m kannon run-pack``: run a pack's members (``KANNON_PACK``, kannon.pack.protocol) side by side.

One process per member, forked from this one after kannon.child is imported, so each starts warm. Each member is
what a cold ``python -m kannon run-task`` would be in a pod of its own: its own environment, record file and
process group, and it dies with the runner. The runner passes the members' output on, prefixed, and says how each
ended; it exits 0 once all have ended, whatever they did (that is reported per member), or 143 / 130 when a
SIGTERM / SIGINT stopped it (forwarded to the members as SIGTERM; it still waits for every member's end).
"""

from __future__ import annotations

import contextlib
import io
import os
import selectors
import shutil
import signal
import sys
import tempfile
import traceback
from collections.abc import Sequence
from typing import BinaryIO, NoReturn

from kannon.childresult import RESULT_PATH_ENV
from kannon.exitcodes import REASON_PREFIX
from kannon.forkserver.server import exit_code_of, flush_stdio, reaped, set_pdeathsig
from kannon.measure import OWN_CONTAINER_ENV
from kannon.pack.protocol import PACK_ENV, Member, PackError, decode, end_line, member_line

EXIT_BAD_INPUT = 2
MAX_LINE = 1 << 16  # a longer line (a progress bar redrawn with \r) is passed on in pieces, each prefixed
_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}


def main(argv: Sequence[str]) -> int:
    if argv:
        return _refuse(f"takes no arguments (the members come from {PACK_ENV}), got {' '.join(argv)!r}")
    text = os.environ.get(PACK_ENV)
    if text is None:
        return _refuse(f"{PACK_ENV} is not set")
    try:
        members = decode(text)
    except PackError as e:
        return _refuse(f"{PACK_ENV}: {e}")
    import kannon.child  # noqa: F401 - once here rather than in every member

    try:
        pack = _Pack(members)
    except OSError as e:  # mkdtemp: a read-only root filesystem with no writable /tmp
        print(f"{REASON_PREFIX}kannon run-pack: no writable temporary directory for the members' records ({e}); "
              "set TMPDIR or mount an emptyDir at /tmp", file=sys.stderr)  # fmt: skip
        return EXIT_BAD_INPUT
    return pack.run()


def _refuse(message: str) -> int:
    print(f"kannon run-pack: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


class _Pack:
    """The loop: single-threaded (it forks), woken by its members' output and by signals (set_wakeup_fd)."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members
        self.out: BinaryIO | None = sys.stdout.buffer
        self.tmp = tempfile.mkdtemp(prefix="kannon-pack-")
        self.pids: dict[int, int] = {}  # pid -> member index, until reaped
        self.codes: dict[int, int] = {}  # member index -> exit code, once reaped
        self.reading: dict[int, int] = {}  # a member's pipe (read end) -> member index, until EOF
        self.partial: dict[int, bytes] = {}  # member index -> the start of a line not yet ended
        self.ended: set[int] = set()
        self.signals: list[int] = []  # received, in order: the first decides the exit code
        self.forwarded = 0  # how many of them were passed on to the members
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        self.runner = os.getpid()

    def run(self) -> int:
        try:
            self._start()
            while len(self.ended) < len(self.members):
                for key, _ in self.sel.select():
                    if key.fd == self.wake_r:
                        with contextlib.suppress(BlockingIOError):
                            while os.read(self.wake_r, 512):
                                pass
                    else:
                        self._read(key.fd)
                self._flush()
                self._reap()  # every round, not only on SIGCHLD: a reap costs one system call
                self._forward()
                self._report_ended()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return 128 + self.signals[0] if self.signals else 0

    def _start(self) -> None:
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.sel.register(self.wake_r, selectors.EVENT_READ)
        # Before the first fork: a member that ends at once must still wake the loop. As PID 1 of a pod a signal
        # without a handler is dropped by the kernel, so SIGTERM (pod deletion) needs ours.
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        pipes = [os.pipe() for _ in self.members]
        for stream in (sys.stdout, sys.stderr):  # nothing buffered here may be written again by a member
            stream.flush()
        # Blocked while forking: a signal reaching a member before it has reset our handlers would be lost
        # (appended to its copy of self.signals); blocked, it waits for the member's own handling.
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            for i, member in enumerate(self.members):
                pid = os.fork()
                if pid == 0:
                    self._member(i, member, pipes)
                with contextlib.suppress(OSError):  # the member does the same: whichever comes first (no race)
                    os.setpgid(pid, pid)
                self.pids[pid] = i
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        for i, (r, w) in enumerate(pipes):
            os.close(w)  # the member's copy is the last: EOF when it (and what it started) is done
            self.reading[r] = i
            self.sel.register(r, selectors.EVENT_READ)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals.append(signum)  # acted on in the loop, which the wakeup fd wakes

    def _member(self, i: int, member: Member, pipes: list[tuple[int, int]]) -> NoReturn:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)  # what a fresh interpreter has
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
            set_pdeathsig(signal.SIGKILL)
            if os.getppid() != self.runner:  # the runner died before prctl took effect
                os._exit(128 + signal.SIGKILL)
            # A group of its own, as a pod's PID 1 leads one: kannon.child stops its group on SIGTERM, and what
            # the member leaves behind is killed when it ends (see _reap)
            os.setpgid(0, 0)
            self.sel.close()
            out = pipes[i][1]
            for fd in {self.wake_r, self.wake_w, *(fd for pipe in pipes for fd in pipe)} - {out}:
                os.close(fd)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.close(out)
            sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", line_buffering=True)
            sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                          errors="backslashreplace", write_through=True)  # fmt: skip
            os.environ.update(member.env)
            os.environ.pop(PACK_ENV, None)
            os.environ[RESULT_PATH_ENV] = os.path.join(self.tmp, f"{i}.json")
            if len(self.members) > 1:  # the pod's cgroup holds the other members too: its peak is not this one's
                os.environ.pop(OWN_CONTAINER_ENV, None)
            code = _run(member.args)
        except BaseException:
            with contextlib.suppress(BaseException):
                traceback.print_exc()
        flush_stdio()
        os._exit(code & 0xFF)

    def _read(self, fd: int) -> None:
        i = self.reading[fd]
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # EOF: a line without its newline is still the member's
            rest = self.partial.pop(i, b"")
            if rest:
                self._write(member_line(i, rest))
            self.sel.unregister(fd)
            os.close(fd)
            del self.reading[fd]
            return
        *lines, rest = (self.partial.pop(i, b"") + data).split(b"\n")
        if lines:
            self._write(b"".join(member_line(i, line) for line in lines))
        if len(rest) > MAX_LINE:
            self._write(member_line(i, rest))
        elif rest:
            self.partial[i] = rest

    def _write(self, data: bytes) -> None:
        if self.out is None:
            return
        try:
            self.out.write(data)
        except OSError:  # nobody reads the log any more: the members still run and are reaped
            self.out = None

    def _flush(self) -> None:
        if self.out is not None:
            try:
                self.out.flush()
            except OSError:
                self.out = None

    def _reap(self) -> None:
        for pid, status in reaped():
            i = self.pids.pop(pid, None)
            if i is None:
                continue  # an orphan that PID 1 inherited: reaped, nothing to report
            code = os.waitstatus_to_exitcode(status)
            self.codes[i] = 128 - code if code < 0 else code
            # What the member left in its group would hold its output open (its end would never be reported);
            # a cold member's pod would end it with the container.
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)

    def _forward(self) -> None:
        if len(self.signals) == self.forwarded:
            return
        self.forwarded = len(self.signals)  # each signal once: a second SIGTERM is passed on again
        for pid in self.pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)

    def _report_ended(self) -> None:
        open_ = set(self.reading.values())
        for i in sorted(set(self.codes) - self.ended - open_):
            record: str | None = None
            path = os.path.join(self.tmp, f"{i}.json")
            with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as f:
                record = f.read() or None
            self._write(end_line(i, self.codes[i], record))
            self.ended.add(i)
        self._flush()


def _run(args: tuple[str, ...]) -> int:
    """A member's command, in the member; its exit code."""
    if args[0] != "run-task":
        print(f"kannon run-pack: unknown member command {args[0]!r} (a member runs run-task)", file=sys.stderr)
        return EXIT_BAD_INPUT
    import kannon.child

    try:
        return kannon.child.main(args[1:])
    except SystemExit as e:  # argparse's: what the interpreter would make of it
        return exit_code_of(e.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        return 128 + signal.SIGINT
