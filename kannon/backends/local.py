"""Local backend: every bullet runs the child entrypoint in its own process on this machine.

Two modes run the same ``kannon.child.main``:

* ``fork`` (default): a pre-warmed *zygote* process — forked from the master right after planning, so gokart,
  luigi and the user's modules are already imported — hands each task to a process it forked beforehand (a *spare*,
  which is waiting for exactly this), then forks the next spare while the machine is idle. This removes the ~0.5 s
  interpreter start + import per task, and the fork itself from the launch path. If the master already runs other
  threads at that point (forking a multi-threaded process is unsafe), the zygote is a fresh interpreter that
  pre-imports the bullet modules instead.
* ``spawn``: a fresh ``python -m kannon run-task ...`` per task (full isolation).

Every child gets its own session/process group (cancel kills the whole group) and ``PR_SET_PDEATHSIG``, so children
die with their parent even when the master is SIGKILLed. Output goes through a pipe to the master, which keeps it
under ``run_dir/logs`` (and streams it as LogLine events with ``--follow-logs``). One I/O thread in the master
serves every pipe and the zygote's socket (no thread per child).

A child's environment, as on Kubernetes, is what it is given, not the master's whole ``os.environ`` (issue 12:
credentials in the master's shell must not reach every task): :data:`BASE_ENV` (PATH, HOME, USER, LOGNAME, SHELL,
LANG, LANGUAGE, LC_*, TZ, TMPDIR, TMP, TEMP, VIRTUAL_ENV, PYTHONPATH, PYTHONHOME, each when the master has it), then
the run's secrets (``env_to_inherit``), then ``Launch.env`` (the task's ``Hints.env``, kannon's own variables).
``LocalExecutor(full_env=True)`` / ``--local-full-env`` gives the master's whole environment instead of the base.
Both modes get exactly this: a spawned child through ``Popen(env=...)``, a forked one by replacing ``os.environ``.

A forked child reports its exit code to the zygote just before it exits: tearing down a process that shares the
master's memory takes milliseconds, and the result is final once the task has returned and its output is flushed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import heapq
import itertools
import json
import logging
import os
import select
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kannon import childresult, exitcodes, logtail
from kannon.backends import _memlimit
from kannon.backends.base import (
    Executor,
    Finished,
    Launch,
    LogLine,
    Report,
    RunInfo,
    Started,
    tail_lines,
)
from kannon.hints import Hints
from kannon.hookspecs import hookimpl

log = logging.getLogger("kannon.local")

Mode = Literal["fork", "spawn"]
_MAX_MSG = 1 << 20
_FORCE_EOF_AFTER = 5.0  # a grandchild may hold the output pipe open after the child exited
_MAX_SPARES = 16
# Forking all spares right away would compete for the CPU with the children that were just started; beyond the
# first one, wait for a lull.
_SPARE_REFILL_IDLE = 0.1
_SPARE_ACK_TIMEOUT = 10.0  # a spare confirms a request at once; only a stuck or dying one takes longer


#: What a child gets of the master's environment by default (issue 12: as on Kubernetes, a child sees only what it
#: is given). What any process expects (PATH, HOME, USER, LOGNAME, SHELL), the same text encoding, locale and time
#: zone as the master (LANG, LANGUAGE, LC_*, TZ: parsing and formatting must not differ between master and child),
#: the same temporary directory (TMPDIR, TMP, TEMP), and what makes a fresh interpreter the master's (VIRTUAL_ENV,
#: PYTHONPATH, PYTHONHOME: ``--local-mode spawn`` must import kannon, and site hooks, as the master does). Anything
#: else (credentials above all) only via env_to_inherit or Hints.env; full_env=True passes everything.
BASE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TMP", "TEMP",
            "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")  # fmt: skip
BASE_ENV_PREFIXES = ("LC_",)


def base_env(source: dict[str, str] | None = None) -> dict[str, str]:
    """The part of ``source`` (default: the master's environment) every child gets: :data:`BASE_ENV`."""
    src = dict(os.environ) if source is None else source
    return {k: v for k, v in src.items() if k in BASE_ENV or k.startswith(BASE_ENV_PREFIXES)}


def _set_pdeathsig(sig: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # killed by signal n -> 128+n, as shells report it


@dataclass
class _Child:
    launch: Launch
    pid: int | None = None
    exit_code: int | None = None
    reason: str | None = None
    eof: bool = False
    reaped: bool = False  # the process is gone (not merely reported its exit code)
    cancelled: bool = False
    finished: bool = False
    memory: _memlimit.ChildLimit | None = None  # the memory hint's enforcement, if it has one
    result_path: Path | None = None  # where the child writes its record (kannon.childresult)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _IOLoop:
    """One thread multiplexing readable fds and timers; callbacks run on it and must not block."""

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._lock = threading.Lock()
        self._adds: list[tuple[int, Callable[[], None]]] = []
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._stopping = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="kannon-local-io", daemon=True)
        self._thread.start()

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        with self._lock:
            self._adds.append((fd, callback))
        self._wake()

    def remove_reader(self, fd: int) -> None:
        """Only from a callback (the loop's own thread)."""
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(fd)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        with self._lock:
            heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), callback))
        self._wake()

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    def _wake(self) -> None:
        with self._lock, contextlib.suppress(BlockingIOError, OSError):
            if not self._closed:  # never write to a closed (maybe reused) fd number
                os.write(self._wake_w, b"x")

    @staticmethod
    def _call(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:  # one bad callback must not stop every other child's output and events
            log.exception("kannon local backend: an I/O callback failed")

    def _run(self) -> None:
        try:
            while not self._stopping:
                with self._lock:
                    adds, self._adds = self._adds, []
                    timeout = max(0.0, self._timers[0][0] - time.monotonic()) if self._timers else None
                for fd, cb in adds:
                    self._sel.register(fd, selectors.EVENT_READ, cb)
                for key, _ in self._sel.select(timeout):
                    if key.fd == self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            while os.read(self._wake_r, 4096):
                                pass
                    else:
                        self._call(key.data)
                due: list[Callable[[], None]] = []
                with self._lock:
                    now = time.monotonic()
                    while self._timers and self._timers[0][0] <= now:
                        due.append(heapq.heappop(self._timers)[2])
                for cb in due:
                    self._call(cb)
        finally:
            with self._lock:
                self._closed = True
                for key in list(self._sel.get_map().values()):  # pipes of children killed at close()
                    with contextlib.suppress(OSError):
                        os.close(key.fd)
                self._sel.close()
                os.close(self._wake_w)


class LocalExecutor(Executor):
    """Run bullets as local processes. ``mode="fork"`` (fast) or ``"spawn"`` (a fresh interpreter per task).

    A child's environment is :func:`base_env` < the run's secrets (env_to_inherit) < ``Launch.env``; with
    ``full_env=True`` the master's whole environment instead of :func:`base_env`."""

    name = "local"
    delivers_secrets = True  # RunInfo.secrets: process environment

    def __init__(self, mode: Mode = "fork", max_workers: int | None = None, kill_grace: float = 5.0,
                 full_env: bool = False, ship_code: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.full_env = full_env
        # Accepted so one pipeline script can switch backends; a no-op: local children run the master's own files
        # (Kannon.build ships nothing for this backend; docs/code-shipping.md).
        self.ship_code = ship_code
        if mode not in ("fork", "spawn"):
            raise ValueError(f"LocalExecutor mode must be 'fork' or 'spawn', not {mode!r}")
        self.mode: Mode = mode
        self.python = sys.executable
        self.default_parallelism = max_workers or os.cpu_count() or 1
        self.kill_grace = kill_grace
        self._children: dict[str, _Child] = {}
        self._zygote: _Zygote | None = None
        self._io: _IOLoop | None = None
        self._watchdog_armed = False

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self, run: RunInfo, report: Report) -> None:
        super().start(run, report)
        (run.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        _memlimit.cleanup_stale(_memlimit.mechanism())
        if self.mode == "fork":
            # Before the I/O thread exists: the zygote is forked from this process while it has no other threads.
            self._zygote = _Zygote.create()
        self._io = _IOLoop()
        if self._zygote is not None:
            self._zygote.attach(self._io, self._on_zygote_message)

    def prepare(self, modules: list[str]) -> None:  # type: ignore[override]
        if self._zygote is not None:
            spares = min(_MAX_SPARES, max(4, self.default_parallelism))
            self._zygote.send({"op": "import", "modules": list(modules), "spares": spares})

    def validate(self, family: str, hints: Hints) -> list[str]:
        return []  # cpu/gpu/image/node placement have no local meaning; memory and timeout are enforced

    def close(self) -> None:
        # Normally nothing is left; if the build ended abnormally, children must not outlive it.
        with self._lock:
            leftovers = list(self._children.values())
        for child in leftovers:
            self._signal(child, signal.SIGKILL, even_if_finished=True)
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None
        if self._io is not None:
            self._io.stop()
            self._io = None

    # -- launching ---------------------------------------------------------------------------------------------
    def launch(self, launch: Launch) -> None:
        if self._io is None:
            raise RuntimeError("LocalExecutor.launch() before start()")
        self.track(launch.key)
        child = _Child(launch)
        with self._lock:
            self._children[launch.key] = child
        secrets = self.run.secrets if self.run is not None else {}
        own = dict(os.environ) if self.full_env else base_env()
        env = {**own, **secrets, **launch.env, **self._memory_env(child), **self._result_env(child)}
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = launch.log_path.open("ab")
        read_fd, write_fd = os.pipe()
        try:
            if self._zygote is not None:
                self._zygote.send(
                    {"op": "run", "key": launch.key, "args": list(launch.child_args), "env": env, "cwd": os.getcwd()},
                    fd=write_fd,
                )
            else:
                env["KANNON_PARENT_PID"] = str(os.getpid())
                proc = subprocess.Popen(
                    launch.argv(self.python), env=env, stdin=subprocess.DEVNULL, stdout=write_fd,
                    stderr=write_fd, start_new_session=True,
                )  # fmt: skip
                self._on_pid(launch.key, proc.pid)
                threading.Thread(target=self._wait_popen, args=(launch.key, proc), daemon=True).start()
        except BaseException:
            os.close(read_fd)
            log.close()
            raise
        finally:
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        self._io.add_reader(read_fd, _Pump(self, child, read_fd, log).on_readable)

    def _result_env(self, child: _Child) -> dict[str, str]:
        """Where the child writes its record (kannon.childresult): a fresh file per attempt in the run directory."""
        if self.run is None:
            return {}
        child.result_path = childresult.result_file(self.run.run_dir, self.run.invocation_id, child.launch)
        with contextlib.suppress(OSError):
            child.result_path.unlink()  # never read an older attempt's record as this one's
        return {childresult.RESULT_PATH_ENV: str(child.result_path)}

    def _wait_popen(self, key: str, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        self._on_exit(key, 128 - code if code < 0 else code)

    def _on_zygote_message(self, msg: dict[str, Any]) -> None:
        if "pid" in msg:
            self._on_pid(msg["key"], int(msg["pid"]))
        elif "code" in msg:  # the child's own report, sent just before it exits
            self._on_exit(msg["key"], int(msg["code"]), reaped=False)
        elif "status" in msg:
            self._on_exit(msg["key"], _exit_code(int(msg["status"])))
        elif "failed" in msg:
            self._on_exit(msg["key"], None, reason=str(msg["failed"]))
        elif "zygote_died" in msg:
            for key in self.live_keys():
                self._on_exit(key, None, reason="the local fork server died unexpectedly")

    def _on_pid(self, key: str, pid: int) -> None:
        child = self._children[key]
        with child.lock:
            child.pid = pid
            cancelled = child.cancelled
        if cancelled:  # cancel() arrived before the pid
            self._signal(child, signal.SIGTERM)
        self._arm_watchdog(child)
        self.emit(Started(key, f"pid {pid}"))

    def _on_eof(self, child: _Child) -> None:
        with child.lock:
            child.eof = True
        self._maybe_finish(child)

    def _on_exit(self, key: str, code: int | None, reason: str | None = None, reaped: bool = True) -> None:
        child = self._children.get(key)
        if child is None:
            return
        with child.lock:
            if child.exit_code is None and child.reason is None:  # the first word stands (report, then reap)
                child.exit_code, child.reason = code, reason
            child.reaped = child.reaped or reaped
            pid = child.pid
        if reaped:
            if pid is not None:
                # Leftover processes of the task's group would keep its pipe open (and keep running): end them.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            if reason is not None:
                with child.lock:
                    child.eof = True
            elif self._io is not None:
                self._io.call_later(_FORCE_EOF_AFTER, lambda: self._on_eof(child))
        self._maybe_finish(child)

    def _maybe_finish(self, child: _Child) -> None:
        with child.lock:
            if child.finished and child.reaped:
                self._forget(child)
            if child.finished or not child.eof or (child.exit_code is None and child.reason is None):
                return
            child.finished = True
            code, reason, cancelled, reaped = child.exit_code, child.reason, child.cancelled, child.reaped
        launch = child.launch
        raw = tail_lines(launch.log_path)  # the child's own reason line is in here
        tail = logtail.read_tail(launch.log_path)
        where = f"pid {child.pid}" if child.pid else None
        record = childresult.read_for(child.result_path, launch) if child.result_path is not None else None
        if cancelled:
            event = Finished(launch.key, code, "cancelled", "Cancelled", log_tail=tail, where=where)
        elif code == 0 and reason is None:
            event = Finished(launch.key, 0, log_tail=tail, where=where)
        else:
            why = reason or exitcodes.describe(code, raw)
            klass = exitcodes.failure_class(code)
            oom = _oom_reason(child, code, raw)
            no_kannon = logtail.kannon_import_failure(raw) if code == 1 and reason is None else None
            if oom is not None:
                why, klass = oom, "OOMKilled"
            elif no_kannon is not None:
                why = logtail.kannon_import_reason(self.python, no_kannon, "LocalExecutor(python=...)")
                klass = "KannonNotImportable"
            event = Finished(launch.key, code, why, klass, log_tail=tail, where=where)
        event = dataclasses.replace(event, result=record)
        if reaped:
            self._forget(child)
        self.emit(event)

    def _forget(self, child: _Child) -> None:
        with self._lock:
            if self._children.get(child.launch.key) is child:
                del self._children[child.launch.key]
        self._remove_cgroup(child, tries=20)

    # -- memory hints (kannon.backends._memlimit) ---------------------------------------------------------------
    def describe_limits(self) -> str:
        """One line for the run header and `kannon plan`: how memory hints are enforced here."""
        return _memlimit.mechanism().describe()

    def _memory_env(self, child: _Child) -> dict[str, str]:
        limit = child.launch.hints.memory_bytes
        if not limit:
            return {}
        mech = _memlimit.mechanism()
        try:
            child.memory = _memlimit.ChildLimit(mech, child.launch.key, int(limit))
        except OSError as e:  # the cgroup could not be made (a limit on cgroups, a changed hierarchy): still enforce
            log.warning("kannon: memory cgroup for %s failed (%s); watching its memory instead", child.launch.key, e)
            child.memory = _memlimit.ChildLimit(_memlimit.Mechanism("watchdog"), child.launch.key, int(limit))
        return child.memory.env()

    def _arm_watchdog(self, child: _Child) -> None:
        if child.memory is None or child.memory.path is not None or self._io is None:
            return  # no hint, or the kernel enforces it
        with self._lock:
            armed, self._watchdog_armed = self._watchdog_armed, True
        if not armed:
            self._io.call_later(_memlimit.WATCHDOG_INTERVAL, self._watchdog)

    def _watchdog(self) -> None:
        """I/O thread: SIGKILL a child's process group whose private resident memory is above its hint."""
        with self._lock:
            watched = [c for c in self._children.values()
                       if c.memory is not None and c.memory.path is None and c.pid and not c.finished]  # fmt: skip
            self._watchdog_armed = bool(watched)
        if not watched:
            return
        members = _memlimit.group_members({c.pid for c in watched if c.pid})
        for c in watched:
            assert c.memory is not None and c.pid is not None
            used = _memlimit.private_rss(members.get(c.pid, []))
            if used > c.memory.limit and c.memory.watchdog_killed_at is None:
                c.memory.watchdog_killed_at = used
                self._signal(c, signal.SIGKILL)
        if self._io is not None:
            self._io.call_later(_memlimit.WATCHDOG_INTERVAL, self._watchdog)

    def _remove_cgroup(self, child: _Child, tries: int) -> None:
        # The last process of the group may take a moment to leave the cgroup after the reaped child.
        if child.memory is not None and not child.memory.remove() and tries > 0 and self._io is not None:
            self._io.call_later(0.5, lambda: self._remove_cgroup(child, tries - 1))

    # -- cancelling --------------------------------------------------------------------------------------------
    def cancel(self, key: str) -> None:
        child = self._children.get(key)
        if child is None:
            return
        with child.lock:
            child.cancelled = True
            has_pid = child.pid is not None
        if has_pid:
            self._signal(child, signal.SIGTERM)
            if self._io is not None:
                self._io.call_later(self.kill_grace, lambda: self._signal(child, signal.SIGKILL))

    def _signal(self, child: _Child, sig: int, even_if_finished: bool = False) -> None:
        if child.pid is None or child.reaped or (child.finished and not even_if_finished):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, sig)


def _oom_reason(child: _Child, code: int | None, tail: tuple[str, ...]) -> str | None:
    """The OOMKilled reason, worded as the Docker and Kubernetes backends word it, or None."""
    hint = child.launch.hints.memory
    mem = child.memory
    if mem is not None and mem.oom_killed():
        how = "its memory cgroup" if mem.path is not None else "kannon's memory watchdog"
        return (f"out of memory: the task was killed at its memory limit of {hint} by {how} (exit {code}); "
                "raise `memory` in the task's hints")
    if hint and code == exitcodes.TASK_FAILED and any("MemoryError" in line for line in tail):
        return f"out of memory: the task exceeded its memory hint {hint}; raise `memory` in the task's hints"
    return None


class _Pump:
    """Copies one child's output to its log file (and to LogLine events when following logs); I/O thread only."""

    def __init__(self, executor: LocalExecutor, child: _Child, fd: int, log: Any) -> None:
        self.ex, self.child, self.fd, self.log = executor, child, fd, log
        self.follow = bool(executor.run and executor.run.follow_logs)
        self.pending = b""
        self.capped = logtail.CappedLog(log)

    def on_readable(self) -> None:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self.capped.write(chunk)
            if self.follow:
                self.pending += chunk
                *lines, self.pending = self.pending.split(b"\n")
                for line in lines:
                    self.ex.emit(LogLine(self.child.launch.key, line.decode("utf-8", "replace")))
            return
        if self.follow and self.pending:
            self.ex.emit(LogLine(self.child.launch.key, self.pending.decode("utf-8", "replace")))
        assert self.ex._io is not None
        self.ex._io.remove_reader(self.fd)
        os.close(self.fd)
        self.capped.close()
        self.ex._on_eof(self.child)



# ---------------------------------------------------------------------------------------------------------------
# the zygote (fork server)


class _Zygote:
    """Master-side handle: requests go over a SOCK_SEQPACKET pair (one JSON message + optional fd per packet)."""

    def __init__(self, pid: int, sock: socket.socket, proc: subprocess.Popen[bytes] | None) -> None:
        self.pid, self.sock, self._proc = pid, sock, proc
        self._send_lock = threading.Lock()
        self._on_message: Callable[[dict[str, Any]], None] | None = None
        self._io: _IOLoop | None = None

    @classmethod
    def create(cls) -> _Zygote:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        master = os.getpid()
        if threading.active_count() == 1:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the zygote: inherits every module the master imported
                code = 0
                try:
                    mine.close()
                    _zygote_main(theirs, master)
                except BaseException:
                    code = 70
                finally:
                    os._exit(code)
            theirs.close()
            return cls(pid, mine, None)
        # Other threads exist: fork would copy their locks mid-use. Start a fresh interpreter instead.
        proc = subprocess.Popen(
            [sys.executable, "-m", "kannon.backends.local", "--zygote", str(theirs.fileno()), str(master)],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
        )  # fmt: skip
        theirs.close()
        return cls(proc.pid, mine, proc)

    def attach(self, io: _IOLoop, on_message: Callable[[dict[str, Any]], None]) -> None:
        self._io, self._on_message = io, on_message
        # A timeout (not blocking mode) so sends may wait for buffer space while the I/O thread reads only
        # what select() announced: toggling O_NONBLOCK would affect both threads at once.
        self.sock.settimeout(60)
        io.add_reader(self.sock.fileno(), self._on_readable)

    def send(self, msg: dict[str, Any], fd: int | None = None) -> None:
        data = json.dumps(msg).encode()
        with self._send_lock:
            if fd is None:
                self.sock.send(data)
            else:
                socket.send_fds(self.sock, [data], [fd])

    def _on_readable(self) -> None:
        """One packet per call: select() reports the socket again while more are queued."""
        assert self._on_message is not None and self._io is not None
        try:
            data = self.sock.recv(_MAX_MSG)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return
        except OSError:
            data = b""
        if not data:
            self._io.remove_reader(self.sock.fileno())
            self._on_message({"zygote_died": True})
            return
        self._on_message(json.loads(data))

    def close(self) -> None:
        if self._io is not None:
            # The zygote's EOF below must not be reported as a death; the I/O thread drops the socket first.
            done = threading.Event()

            def _detach() -> None:
                assert self._io is not None
                self._io.remove_reader(self.sock.fileno())
                done.set()

            self._io.call_later(0, _detach)
            done.wait(timeout=10)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # the zygote sees EOF, kills what is left and exits
        self.sock.close()
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
            return
        _wait_exit(self.pid, timeout=10)


def _wait_exit(pid: int, timeout: float) -> None:
    """Reap our child ``pid``, waiting at most ``timeout`` for it to exit (a pidfd where the OS has one)."""
    with contextlib.suppress(ChildProcessError):
        try:
            pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):  # not Linux >= 5.3, or filtered by a sandbox
            pidfd = None
        if pidfd is not None:
            try:
                select.select([pidfd], [], [], timeout)
            finally:
                os.close(pidfd)
            os.waitpid(pid, os.WNOHANG)
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
            time.sleep(0.005)  # bounded: no pidfd on this OS; the zygote exits right after EOF


def _warm_up() -> None:
    """Import what every child needs anyway, once, in the zygote (children inherit it)."""
    import multiprocessing.synchronize  # noqa: F401 - gokart.build imports it on first use

    import kannon.child  # noqa: F401 - the child's entry point

    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True)
    # Objects that exist now are never garbage: keep the collector of every child from walking (and so copying)
    # the inherited heap page by page.
    gc.freeze()


@dataclass
class _Spare:
    pid: int
    sock: socket.socket  # the zygote's end of the pair: the request goes out, the exit code comes back


def _zygote_main(sock: socket.socket, master_pid: int) -> None:
    """The fork server loop. Single-threaded on purpose: it only forks, hands out requests, reaps and reports."""
    _set_pdeathsig(signal.SIGTERM)  # master gone -> SIGTERM -> kill our children below, then exit
    if os.getppid() != master_pid:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the master, which cancels through us
    children: dict[int, str] = {}  # pid -> key of a running task
    reports: dict[int, tuple[int, str]] = {}  # socket fd -> (pid, key): exit codes the children send
    spares: list[_Spare] = []
    want_spares = 0
    idle_since = time.monotonic()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)

    def _term(*_: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _term)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)

    def open_fds() -> list[int]:
        return [sock.fileno(), wake_r, wake_w, *(s.sock.fileno() for s in spares), *reports]

    def new_spare(*also_close: int) -> _Spare:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Every fd of ours is closed in the spare; a stray copy of some task's output pipe would delay its EOF.
        inherited = [*open_fds(), *also_close, mine.fileno(), *([sel.fileno()] if hasattr(sel, "fileno") else [])]
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _spare_main(theirs, inherited)  # never returns
        theirs.close()
        return _Spare(pid, mine)

    def start(req: dict[str, Any], out_fd: int) -> int | None:
        """Hand the request to a spare that confirms it has it; None if no process could be started."""
        data = json.dumps(req).encode()
        for _ in range(len(spares) + 3):
            spare = spares.pop(0) if spares else new_spare(out_fd)
            try:
                socket.send_fds(spare.sock, [data], [out_fd])
                spare.sock.settimeout(_SPARE_ACK_TIMEOUT)
                ack = spare.sock.recv(16)
                spare.sock.settimeout(None)
            except OSError:
                ack = b""
            if ack == b"ok":
                reports[spare.sock.fileno()] = (spare.pid, req["key"])
                sel.register(spare.sock, selectors.EVENT_READ, spare.sock)  # data: a child's report socket
                return spare.pid
            # It died while waiting (a stray signal, the OOM killer) or never got going: the task goes to the
            # next one rather than failing for it.
            with contextlib.suppress(ProcessLookupError):
                os.kill(spare.pid, signal.SIGKILL)
            spare.sock.close()
        return None

    try:
        while True:
            refill = len(spares) < want_spares
            timeout = max(0.0, idle_since + _SPARE_REFILL_IDLE - time.monotonic()) if refill else None
            if refill and not spares:  # keep one ready at all times: a stream of short tasks is never idle
                timeout = 0.0
            events = sel.select(timeout)
            if not events:
                if refill:
                    spares.append(new_spare())
                continue
            idle_since = time.monotonic()
            for key, _ in events:
                if key.fileobj is sock:
                    msg, fds, _flags, _addr = socket.recv_fds(sock, _MAX_MSG, 1)
                    if not msg:
                        return
                    req = json.loads(msg)
                    if req["op"] == "import":
                        for module in req["modules"]:
                            with contextlib.suppress(Exception):  # the child reports import errors properly
                                __import__(module)
                        _warm_up()
                        for spare in spares:  # forked before these imports: replace them
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(spare.pid, signal.SIGKILL)
                            spare.sock.close()
                        spares.clear()
                        want_spares = int(req.get("spares", 0))
                        idle_since = 0.0  # the master is busy planning/running master tasks: fork spares now
                    elif req["op"] == "run":
                        pid = start(req, fds[0])
                        os.close(fds[0])
                        if pid is None:
                            failed = "the local fork server could not start a process for it"
                            sock.send(json.dumps({"key": req["key"], "failed": failed}).encode())
                            continue
                        children[pid] = req["key"]
                        sock.send(json.dumps({"key": req["key"], "pid": pid}).encode())
                        want_spares = min(_MAX_SPARES, max(want_spares, len(children)))
                elif key.data is not None:  # a child's report (or its end)
                    report_sock: socket.socket = key.data
                    pid_key = reports.pop(report_sock.fileno())
                    sel.unregister(report_sock)
                    with contextlib.suppress(OSError):
                        data = report_sock.recv(_MAX_MSG)
                        if data:
                            sock.send(json.dumps({"key": pid_key[1], "code": int(json.loads(data))}).encode())
                    report_sock.close()
                else:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(wake_r, 512):
                            pass
                    while True:
                        try:
                            pid, status = os.waitpid(-1, os.WNOHANG)
                        except ChildProcessError:
                            break
                        if pid == 0:
                            break
                        key_ = children.pop(pid, None)
                        if key_ is not None:
                            sock.send(json.dumps({"key": key_, "status": status}).encode())
                        else:  # a spare that died while waiting
                            for dead in [s for s in spares if s.pid == pid]:
                                dead.sock.close()
                                spares.remove(dead)
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        for spare in spares:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(spare.pid, signal.SIGKILL)
        # Reap them before we exit, so that once the master has reaped us nothing of the run is left.
        for pid in [*children, *(s.pid for s in spares)]:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _spare_main(sock: socket.socket, inherited: list[int]) -> None:
    """A forked process waiting for its task: set up, run ``kannon run-task``, report the exit code, exit."""
    code = 1
    try:
        zygote = os.getppid()
        signal.set_wakeup_fd(-1)
        for fd in inherited:
            with contextlib.suppress(OSError):
                os.close(fd)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        _set_pdeathsig(signal.SIGKILL)  # the zygote gone -> nothing to wait for
        if os.getppid() != zygote:
            os._exit(128 + signal.SIGKILL)
        os.setsid()
        msg, fds, _flags, _addr = socket.recv_fds(sock, _MAX_MSG, 1)
        if not msg or not fds:
            os._exit(0)  # the zygote retired this spare
        sock.send(b"ok")  # the task is ours now: from here on, how it ends is the task's outcome
        started = time.monotonic()  # the attempt's wall time starts now, not when this spare was forked
        req = json.loads(msg)
        os.dup2(fds[0], 1)
        os.dup2(fds[0], 2)
        os.close(fds[0])
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        os.environ["KANNON_PARENT_PID"] = str(zygote)
        os.environ["KANNON_ATTEMPT_STARTED"] = repr(started)  # kannon.measure.STARTED_ENV
        # What `python -m kannon run-task ...` runs, without kannon.cli (whose build command imports the scheduler,
        # which imports this module): the child's entry point is kannon.child.
        from kannon import child

        args = list(req["args"])
        if args[:1] != ["run-task"]:
            print(f"kannon fork server: not a run-task command: {args[:1]}", file=sys.stderr)
            code = 2
        else:
            code = child.main(args[1:])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
            # Release the output pipe first (the master sees EOF), then say how it ended.
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            sock.send(json.dumps(code).encode())
        os._exit(code)


# ---------------------------------------------------------------------------------------------------------------
# plugin registration (the same door third-party backends use)


def _add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--local-mode", choices=["fork", "spawn"], default="fork",
                       help="local backend: fork from a pre-warmed process (fast) or spawn a fresh interpreter "
                            "per task (full isolation)")  # fmt: skip
    group.add_argument("--local-full-env", dest="local_full_env", action="store_true",
                       help="local backend: give children the master's whole environment (default: PATH, HOME, "
                            "locale, TMPDIR, VIRTUAL_ENV, PYTHONPATH, plus --env-to-inherit and hints)")  # fmt: skip


def _from_options(ns: argparse.Namespace) -> Executor:
    return LocalExecutor(mode=getattr(ns, "local_mode", "fork"), full_env=bool(getattr(ns, "local_full_env", False)))


@hookimpl
def kannon_backends() -> list[Any]:
    from kannon.plugins import BackendSpec

    return [BackendSpec("local", LocalExecutor, "a process per bullet on this machine", _add_options, _from_options)]


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--zygote":
    _zygote_main(socket.socket(fileno=int(sys.argv[2])), int(sys.argv[3]))
