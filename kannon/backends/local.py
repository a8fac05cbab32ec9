"""Local backend: every bullet runs the child entrypoint in its own process on this machine.

Two modes run the same ``kannon.child.main``:

* ``fork`` (default): a pre-warmed *zygote* process — forked from the master right after planning, so gokart,
  luigi and the user's modules are already imported — forks one child per task on request. This removes the
  ~0.5 s interpreter start + import per task. If the master already runs other threads at that point (forking a
  multi-threaded process is unsafe), the zygote is a fresh interpreter that pre-imports the bullet modules instead.
* ``spawn``: a fresh ``python -m kannon run-task ...`` per task (full isolation).

Every child gets its own session/process group (cancel kills the whole group) and ``PR_SET_PDEATHSIG``, so children
die with their parent even when the master is SIGKILLed. Output goes through a pipe to the master, which keeps it
under ``run_dir/logs`` (and streams it as LogLine events with ``--follow-logs``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from kannon import exitcodes
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

Mode = Literal["fork", "spawn"]
_MAX_MSG = 1 << 20


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
    eof: bool = False
    cancelled: bool = False
    finished: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class LocalExecutor(Executor):
    """Run bullets as local processes. ``mode="fork"`` (fast) or ``"spawn"`` (a fresh interpreter per task)."""

    name = "local"

    def __init__(self, mode: Mode = "fork", max_workers: int | None = None, kill_grace: float = 5.0) -> None:
        super().__init__()
        if mode not in ("fork", "spawn"):
            raise ValueError(f"LocalExecutor mode must be 'fork' or 'spawn', not {mode!r}")
        self.mode: Mode = mode
        self.python = sys.executable
        self.default_parallelism = max_workers or os.cpu_count() or 1
        self.kill_grace = kill_grace
        self._children: dict[str, _Child] = {}
        self._zygote: _Zygote | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self, run: RunInfo, report: Report) -> None:
        super().start(run, report)
        (run.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        if self.mode == "fork":
            self._zygote = _Zygote.create(self._on_zygote_message)

    def prepare(self, modules: list[str]) -> None:  # type: ignore[override]
        if self._zygote is not None:
            self._zygote.send({"op": "import", "modules": list(modules)})

    def validate(self, family: str, hints: Hints) -> list[str]:
        return []  # cpu/gpu/image/node placement have no local meaning; memory and timeout are enforced

    def close(self) -> None:
        # Normally nothing is left; if the build ended abnormally, children must not outlive it.
        with self._lock:
            leftovers = list(self._children.values())
        for child in leftovers:
            self._signal(child, signal.SIGKILL)
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None

    # -- launching ---------------------------------------------------------------------------------------------
    def launch(self, launch: Launch) -> None:
        self.track(launch.key)
        child = _Child(launch)
        with self._lock:
            self._children[launch.key] = child
        env = {**os.environ, **launch.env}
        if launch.hints.memory_bytes:
            env["KANNON_RLIMIT_AS"] = str(launch.hints.memory_bytes)
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
        finally:
            os.close(write_fd)
        threading.Thread(target=self._pump, args=(child, read_fd), name=f"kannon-log-{launch.key}", daemon=True).start()

    def _wait_popen(self, key: str, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        self._on_exit(key, 128 - code if code < 0 else code)

    def _on_zygote_message(self, msg: dict[str, Any]) -> None:
        if "pid" in msg:
            self._on_pid(msg["key"], int(msg["pid"]))
        elif "status" in msg:
            self._on_exit(msg["key"], _exit_code(int(msg["status"])))
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
        self.emit(Started(key, f"pid {pid}"))

    def _pump(self, child: _Child, fd: int) -> None:
        """Copy the child's output to its log file (and to LogLine events when following logs)."""
        follow = bool(self.run and self.run.follow_logs)
        child.launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(fd, "rb", buffering=0) as src, child.launch.log_path.open("ab") as log:
            pending = b""
            while True:
                chunk = src.read(65536)
                if not chunk:
                    break
                log.write(chunk)
                log.flush()
                if follow:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        self.emit(LogLine(child.launch.key, line.decode("utf-8", "replace")))
            if follow and pending:
                self.emit(LogLine(child.launch.key, pending.decode("utf-8", "replace")))
        with child.lock:
            child.eof = True
        self._maybe_finish(child)

    def _on_exit(self, key: str, code: int | None, reason: str | None = None) -> None:
        child = self._children.get(key)
        if child is None:
            return
        with child.lock:
            child.exit_code = code
            pid = child.pid
        if pid is not None:
            # Leftover processes of the task's group would keep its pipe open (and keep running): end them.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if reason is not None:
            with child.lock:
                child.eof = True
        else:
            threading.Timer(5.0, self._force_eof, args=(child,)).start()
        self._maybe_finish(child, reason)

    def _force_eof(self, child: _Child) -> None:
        with child.lock:
            child.eof = True
        self._maybe_finish(child)

    def _maybe_finish(self, child: _Child, reason: str | None = None) -> None:
        with child.lock:
            if child.finished or not child.eof or (child.exit_code is None and reason is None):
                return
            child.finished = True
            code, cancelled = child.exit_code, child.cancelled
        launch = child.launch
        tail = tail_lines(launch.log_path)
        where = f"pid {child.pid}" if child.pid else None
        if cancelled:
            event = Finished(launch.key, code, "cancelled", "Cancelled", log_tail=tail, where=where)
        elif code == 0 and reason is None:
            event = Finished(launch.key, 0, log_tail=tail, where=where)
        else:
            why = reason or exitcodes.describe(code, tail)
            klass = exitcodes.failure_class(code)
            if code == exitcodes.TASK_FAILED and any("MemoryError" in line for line in tail) and launch.hints.memory:
                why, klass = (f"out of memory: the task exceeded its memory hint {launch.hints.memory}; raise "
                              "`memory` in its kannon_hints"), "OOMKilled"  # fmt: skip
            event = Finished(launch.key, code, why, klass, log_tail=tail, where=where)
        with self._lock:
            self._children.pop(launch.key, None)
        self.emit(event)

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
            timer = threading.Timer(self.kill_grace, self._signal, args=(child, signal.SIGKILL))
            timer.daemon = True
            timer.start()

    def _signal(self, child: _Child, sig: int) -> None:
        if child.pid is None or child.finished:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, sig)


# ---------------------------------------------------------------------------------------------------------------
# the zygote (fork server)


class _Zygote:
    """Master-side handle: requests go over a SOCK_SEQPACKET pair (one JSON message + optional fd per packet)."""

    def __init__(self, pid: int, sock: socket.socket, on_message: Any, proc: subprocess.Popen[bytes] | None) -> None:
        self.pid, self.sock, self._on_message, self._proc = pid, sock, on_message, proc
        self._send_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="kannon-zygote", daemon=True)
        self._reader.start()

    @classmethod
    def create(cls, on_message: Any) -> _Zygote:
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
            return cls(pid, mine, on_message, None)
        # Other threads exist: fork would copy their locks mid-use. Start a fresh interpreter instead.
        proc = subprocess.Popen(
            [sys.executable, "-m", "kannon.backends.local", "--zygote", str(theirs.fileno()), str(master)],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
        )  # fmt: skip
        theirs.close()
        return cls(proc.pid, mine, on_message, proc)

    def send(self, msg: dict[str, Any], fd: int | None = None) -> None:
        data = json.dumps(msg).encode()
        with self._send_lock:
            if fd is None:
                self.sock.send(data)
            else:
                socket.send_fds(self.sock, [data], [fd])

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(_MAX_MSG)
            except OSError:
                data = b""
            if not data:
                self._on_message({"zygote_died": True})
                return
            self._on_message(json.loads(data))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # the zygote sees EOF, kills what is left and exits
        self.sock.close()
        with contextlib.suppress(ChildProcessError):
            if self._proc is not None:
                self._proc.wait(timeout=10)
            else:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    done, _ = os.waitpid(self.pid, os.WNOHANG)
                    if done:
                        break
                    time.sleep(0.01)  # bounded: the zygote exits right after EOF


def _zygote_main(sock: socket.socket, master_pid: int) -> None:
    """The fork server loop. Single-threaded on purpose: it only forks, reaps and reports."""
    _set_pdeathsig(signal.SIGTERM)  # master gone -> SIGTERM -> kill our children below, then exit
    if os.getppid() != master_pid:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the master, which cancels through us
    children: dict[int, str] = {}
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
    try:
        while True:
            for key, _ in sel.select():
                if key.fileobj is sock:
                    msg, fds, _flags, _addr = socket.recv_fds(sock, _MAX_MSG, 1)
                    if not msg:
                        return
                    req = json.loads(msg)
                    if req["op"] == "import":
                        for module in req["modules"]:
                            with contextlib.suppress(Exception):  # the child reports import errors properly
                                __import__(module)
                    elif req["op"] == "run":
                        pid = _fork_child(req, fds[0], sock, wake_r, wake_w)
                        os.close(fds[0])
                        children[pid] = req["key"]
                        sock.send(json.dumps({"key": req["key"], "pid": pid}).encode())
                else:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(wake_r, 512):
                            pass
                    while children:
                        try:
                            pid, status = os.waitpid(-1, os.WNOHANG)
                        except ChildProcessError:
                            break
                        if pid == 0:
                            break
                        key_ = children.pop(pid, None)
                        if key_ is not None:
                            sock.send(json.dumps({"key": key_, "status": status}).encode())
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def _fork_child(req: dict[str, Any], out_fd: int, sock: socket.socket, wake_r: int, wake_w: int) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    zygote = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        sock.close()
        signal.set_wakeup_fd(-1)
        os.close(wake_r)
        os.close(wake_w)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(out_fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        os.environ["KANNON_PARENT_PID"] = str(zygote)
        from kannon.cli import main  # exactly what `python -m kannon <args>` runs

        code = main(req["args"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


# ---------------------------------------------------------------------------------------------------------------
# plugin registration (the same door third-party backends use)


def _add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--local-mode", choices=["fork", "spawn"], default="fork",
                       help="local backend: fork from a pre-warmed process (fast) or spawn a fresh interpreter "
                            "per task (full isolation)")  # fmt: skip


def _from_options(ns: argparse.Namespace) -> Executor:
    return LocalExecutor(mode=getattr(ns, "local_mode", "fork"))


@hookimpl
def kannon_backends() -> list[Any]:
    from kannon.plugins import BackendSpec

    return [BackendSpec("local", LocalExecutor, "a process per bullet on this machine", _add_options, _from_options)]


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--zygote":
    _zygote_main(socket.socket(fileno=int(sys.argv[2])), int(sys.argv[3]))
