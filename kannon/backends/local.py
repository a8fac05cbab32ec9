"""Local backend: every bullet runs the child entrypoint in its own process on this machine.

Two modes run the same ``kannon.child.main``:

* ``fork`` (default): kannon's fork server (:mod:`kannon.forkserver`) — forked from the master when the run
  starts, and importing the bullet modules once planned — hands each task to a process it forked beforehand (a
  *spare*, which is waiting for exactly this), then forks the next spare while the machine is idle. This removes the
  ~0.5 s interpreter start + import per task, and the fork itself from the launch path. If the master already runs
  other threads at that point (forking a multi-threaded process is unsafe), the server is a fresh interpreter that
  imports the bullet modules instead.
* ``spawn``: a fresh ``python -m kannon run-task ...`` per task (full isolation).

Every child gets its own session/process group (cancel kills the whole group) and ``PR_SET_PDEATHSIG``, so children
die with their parent even when the master is SIGKILLed. Output goes through a pipe to the master, which keeps it
under ``run_dir/logs`` (and streams it as LogLine events with ``--follow-logs``). One I/O thread in the master
serves every pipe and the fork server's socket (no thread per child; ``kannon.backends._ioloop``).

A child's environment, as on Kubernetes, is what it is given, not the master's whole ``os.environ`` (issue 12:
credentials in the master's shell must not reach every task): :data:`BASE_ENV` (PATH, HOME, USER, LOGNAME, SHELL,
LANG, LANGUAGE, LC_*, TZ, TMPDIR, TMP, TEMP, VIRTUAL_ENV, PYTHONPATH, PYTHONHOME, each when the master has it), then
the run's secrets (``env_to_inherit``), then ``Launch.env`` (the task's ``Hints.env``, kannon's own variables).
``LocalExecutor(full_env=True)`` / ``--local-full-env`` gives the master's whole environment instead of the base.
Both modes get exactly this: a spawned child through ``Popen(env=...)``, a forked one by replacing ``os.environ``.

A forked child reports its exit code to the fork server just before it exits: tearing down a process that shares the
master's memory takes milliseconds, and the result is final once the task has returned and its output is flushed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kannon import childresult, exitcodes, logtail, measure
from kannon.backends import _memlimit
from kannon.backends._ioloop import IOLoop, Pump
from kannon.backends.base import (
    BackendError,
    Executor,
    Finished,
    Launch,
    LogLine,
    Report,
    RunInfo,
    Started,
    tail_lines,
)
from kannon.child import SIGTERM_THREAD
from kannon.forkserver.client import ForkServer
from kannon.hints import Hints
from kannon.hookspecs import hookimpl

log = logging.getLogger("kannon.local")

Mode = Literal["fork", "spawn"]
_FORCE_EOF_AFTER = 5.0  # a grandchild may hold the output pipe open after the child exited
_MAX_SPARES = 16
# Bullets one reused process runs at most before it exits and a fresh one takes over (reuse_processes=True): what
# a leak in the task's code can grow to stays bounded, as with a web server's worker recycling.
REUSE_MAX = 1000
# What every child does anyway, once in the fork server: gokart.build imports multiprocessing.synchronize on first
# use; kannon.childwarm imports the child's entry point and runs one private no-op build there.
_WARM = ["multiprocessing.synchronize", "kannon.childwarm:warm_up"]


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


def _exit_code(code: int) -> int:
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
    reused: bool = False  # runs in a process that may serve the next bullet: signalled through the fork server
    lock: threading.Lock = field(default_factory=threading.Lock)


class LocalExecutor(Executor):
    """Run bullets as local processes. ``mode="fork"`` (fast) or ``"spawn"`` (a fresh interpreter per task).

    A child's environment is :func:`base_env` < the run's secrets (env_to_inherit) < ``Launch.env``; with
    ``full_env=True`` the master's whole environment instead of :func:`base_env`.

    ``reuse_processes=True`` (fork mode; docs/design.md, "Reused processes"): a process whose bullet succeeded and
    left nothing behind (no thread, no process) runs a later bullet instead of exiting, with its signal handlers,
    ``sys.path`` and environment put back. Module-level state of the task's code is shared between the bullets it
    serves, as in luigi's own worker; bullets with a memory hint always get a fresh process."""

    name = "local"
    delivers_secrets = True  # RunInfo.secrets: process environment

    def __init__(self, mode: Mode = "fork", max_workers: int | None = None, kill_grace: float = 5.0,
                 full_env: bool = False, ship_code: bool = False, reuse_processes: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.full_env = full_env
        self.reuse_processes = reuse_processes
        # Accepted so one pipeline script can switch backends; a no-op: local children run the master's own files
        # (Kannon.build ships nothing for this backend; docs/code-shipping.md).
        self.ship_code = ship_code
        if mode not in ("fork", "spawn"):
            raise ValueError(f"LocalExecutor mode must be 'fork' or 'spawn', not {mode!r}")
        if reuse_processes and mode != "fork":
            raise ValueError("LocalExecutor(reuse_processes=True) needs mode='fork': a spawned interpreter is never "
                             "reused")  # fmt: skip
        self.mode: Mode = mode
        self.python = sys.executable
        self.default_parallelism = max_workers or os.cpu_count() or 1
        self.kill_grace = kill_grace
        self._children: dict[str, _Child] = {}
        self._forkserver: ForkServer | None = None
        self._io: IOLoop | None = None
        self._watchdog_armed = False

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self, run: RunInfo, report: Report) -> None:
        super().start(run, report)
        (run.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        _memlimit.cleanup_stale(_memlimit.mechanism())
        if self.mode == "fork":
            # Before the I/O thread exists: the server is forked from this process while it has no other threads.
            self._forkserver = ForkServer.start()
        self._io = IOLoop()
        server = self._forkserver
        if server is not None:
            # A timeout (not blocking mode) so sends may wait for buffer space while the I/O thread reads only
            # what select() announced: toggling O_NONBLOCK would affect both threads at once.
            server.sock.settimeout(60)
            self._io.add_reader(server.sock.fileno(), lambda: self._on_server_readable(server))

    def prepare(self, modules: list[str]) -> None:  # type: ignore[override]
        if self._forkserver is not None:
            spares = min(_MAX_SPARES, max(4, self.default_parallelism))
            self._forkserver.send({"op": "import", "modules": [*modules, *_WARM], "spares": spares})

    def validate(self, family: str, hints: Hints) -> list[str]:
        return []  # cpu/gpu/image/node placement have no local meaning; memory and timeout are enforced

    def close(self) -> None:
        # Normally nothing is left; if the build ended abnormally, children must not outlive it.
        with self._lock:
            leftovers = list(self._children.values())
        for child in leftovers:
            self._signal(child, signal.SIGKILL, even_if_finished=True)
        server, io = self._forkserver, self._io
        if server is not None:
            self._forkserver = None
            if io is not None:
                # The server's EOF below must not be reported as a death: the I/O thread drops the socket first.
                done = threading.Event()

                def _detach() -> None:
                    io.remove_reader(server.sock.fileno())
                    done.set()

                io.call_later(0, _detach)
                done.wait(timeout=10)
            server.close()
        if self._io is not None:
            self._io.stop()
            self._io = None

    # -- launching ---------------------------------------------------------------------------------------------
    def launch(self, launch: Launch) -> None:
        if self._io is None:
            raise RuntimeError("LocalExecutor.launch() before start()")
        if self._forkserver is not None and launch.child_args[:1] != ("run-task",):
            raise ValueError(f"the local fork server runs only run-task, not {launch.child_args[:1]}")
        self.track(launch.key)
        child = _Child(launch)
        with self._lock:
            self._children[launch.key] = child
        secrets = self.run.secrets if self.run is not None else {}
        own = dict(os.environ) if self.full_env else base_env()
        memory = self._memory_env(child)
        env = {**own, **secrets, **launch.env, **memory, **self._result_env(child)}
        child.reused = self._forkserver is not None and self.reuse_processes and not memory
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = launch.log_path.open("ab")
        read_fd, write_fd = os.pipe()
        try:
            if self._forkserver is not None:
                # kannon.child.main in a process forked ahead of time, which tells when it took the task and how
                # it ended before tearing down (kannon.forkserver.server's protocol)
                reuse = {"reuse": True, "keep_threads": [SIGTERM_THREAD], "reuse_max": REUSE_MAX,
                         "started_cpu_env": measure.STARTED_CPU_ENV} if child.reused else {}  # fmt: skip
                self._forkserver.send(
                    {"op": "run", "id": launch.key, "mode": "call", "target": "kannon.child:main",
                     "args": list(launch.child_args[1:]), "env": env, "cwd": os.getcwd(), "report": True,
                     "started_env": measure.STARTED_ENV, **reuse},
                    fd=write_fd,
                )  # fmt: skip
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
        follow = bool(self.run and self.run.follow_logs)
        Pump(self._io, read_fd, log, self._line_emitter(launch.key) if follow else None,
             lambda: self._on_eof(child)).start()  # fmt: skip

    def _line_emitter(self, key: str) -> Callable[[str], None]:
        return lambda line: self.emit(LogLine(key, line))

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

    def _on_server_readable(self, server: ForkServer) -> None:
        """I/O thread, one message per call: select() reports the socket again while more are queued."""
        try:
            msg = server.recv()
        except (BlockingIOError, InterruptedError, TimeoutError):
            return
        except OSError:
            msg = None
        if msg is None:
            assert self._io is not None
            self._io.remove_reader(server.sock.fileno())
            for key in self.live_keys():
                self._on_exit(key, None, reason="the local fork server died unexpectedly")
        elif "ready" in msg or "imported" in msg:
            pass  # a module that failed to import there fails in the child, which reports it properly
        elif "started" in msg:
            self._on_pid(msg["started"], int(msg["pid"]))
        elif "reported" in msg:  # the child's own word, sent just before it exits (or, reused, waits for more)
            self._on_exit(msg["reported"], _exit_code(int(msg["code"])), reaped=False, released=bool(msg.get("again")))
        elif "exited" in msg:
            self._on_exit(msg["exited"], _exit_code(int(msg["code"])))
        elif "failed" in msg:
            self._on_exit(msg["failed"], None, reason=str(msg.get("error")))

    def _on_pid(self, key: str, pid: int) -> None:
        child = self._children[key]
        with child.lock:
            child.pid = pid
            cancelled = child.cancelled
        if cancelled:  # cancel() arrived before the pid: deliver all of it now
            self._terminate(child)
        self._arm_watchdog(child)
        self.emit(Started(key, f"pid {pid}"))

    def _on_eof(self, child: _Child) -> None:
        with child.lock:
            child.eof = True
        self._maybe_finish(child)

    def _on_exit(self, key: str, code: int | None, reason: str | None = None, reaped: bool = True,
                 released: bool = False) -> None:  # fmt: skip
        """``reaped``: the process is gone; ``released``: it lives on to serve another bullet, no longer this one's."""
        child = self._children.get(key)
        if child is None:
            return
        with child.lock:
            if child.exit_code is None and child.reason is None:  # the first word stands (report, then reap)
                child.exit_code, child.reason = code, reason
            child.reaped = child.reaped or reaped or released
            pid = child.pid
        if released and self._io is not None:
            self._io.call_later(_FORCE_EOF_AFTER, lambda: self._on_eof(child))
        elif reaped:
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
            self._terminate(child)

    def _terminate(self, child: _Child) -> None:
        """SIGTERM now, SIGKILL after the grace period unless it has been reaped by then."""
        self._signal(child, signal.SIGTERM)
        if self._io is not None:
            self._io.call_later(self.kill_grace, lambda: self._signal(child, signal.SIGKILL))

    def _signal(self, child: _Child, sig: int, even_if_finished: bool = False) -> None:
        if child.pid is None or child.reaped or (child.finished and not even_if_finished):
            return
        server = self._forkserver
        if child.reused and server is not None:
            # The server knows whether the process still runs this bullet or has moved on to another.
            with contextlib.suppress(OSError):
                server.send({"op": "signal", "id": child.launch.key, "signal": int(sig)})
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


# ---------------------------------------------------------------------------------------------------------------
# plugin registration (the same door third-party backends use)


def _add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--local-mode", choices=["fork", "spawn"], default="fork",
                       help="local backend: fork from a pre-warmed process (fast) or spawn a fresh interpreter "
                            "per task (full isolation)")  # fmt: skip
    group.add_argument("--local-full-env", dest="local_full_env", action="store_true",
                       help="local backend: give children the master's whole environment (default: PATH, HOME, "
                            "locale, TMPDIR, VIRTUAL_ENV, PYTHONPATH, plus --env-to-inherit and hints)")  # fmt: skip
    group.add_argument("--local-reuse-processes", dest="local_reuse_processes", action="store_true",
                       help="local backend, fork mode: a process whose bullet succeeded and left no thread or "
                            "process behind runs a later bullet instead of exiting (faster for many small "
                            "bullets; module-level state is then shared between them: docs/design.md)")  # fmt: skip


def _from_options(ns: argparse.Namespace) -> Executor:
    mode: Mode = getattr(ns, "local_mode", "fork")
    reuse = bool(getattr(ns, "local_reuse_processes", False))
    if reuse and mode != "fork":
        raise BackendError("--local-reuse-processes needs --local-mode fork: a spawned interpreter is never reused")
    return LocalExecutor(mode=mode, full_env=bool(getattr(ns, "local_full_env", False)), reuse_processes=reuse)


@hookimpl
def kannon_backends() -> list[Any]:
    from kannon.plugins import BackendSpec

    return [BackendSpec("local", LocalExecutor, "a process per bullet on this machine", _add_options, _from_options)]
