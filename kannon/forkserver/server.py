"""The fork server: one pre-imported interpreter that forks a process per request (standard library only: the
emulator runs this file by path under a pod's interpreter, which need not have kannon). The protocol, and what a
started process gets, are in the package's docstring (``kannon/forkserver/__init__.py``).

Started as ``PYTHON -c BOOT .../kannon/forkserver/server.py FD [--parent PID] [MODULE...]`` (BOOT runs this file
with runpy, so the file's directory never shadows the standard library), as ``python -m kannon.forkserver.server
FD ...``, or forked from its client (:func:`serve`); ``server.py --pid1 COMMAND...`` runs COMMAND as PID 1 of a new
PID namespace (the emulator's cold pods).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import importlib
import io
import json
import os
import runpy
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
import types
from collections.abc import Iterator
from typing import Any, NoReturn

MAX_MSG = 1 << 22  # a pod's command line and environment: far below what an apiserver accepts in an object
SPARE_IDLE = 0.1  # forking spares competes for the CPU with what was just started: beyond the first, wait for a lull
MAX_SPARES = 16
SPARE_ACK_TIMEOUT = 10.0  # a spare confirms a request at once; only a stuck or dying one takes longer
BOOT = "import runpy, sys; sys.argv.pop(0); runpy.run_path(sys.argv[0], run_name='__main__')"
CLONE_NEWPID = 0x20000000  # <linux/sched.h>
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def set_pdeathsig(sig: int) -> None:
    """Have the kernel send ``sig`` when our parent (the thread that forked us) ends."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, sig)


def reaped() -> Iterator[tuple[int, int]]:
    """(pid, wait status) of every child that has ended, without blocking (waitpid(-1, WNOHANG) until none)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status


def _send(sock: socket.socket, msg: dict[str, Any]) -> None:
    sock.send(json.dumps(msg).encode())


def flush_stdio() -> None:
    """Flush sys.stdout and sys.stderr, whatever state they are in (kannon.pack.runner's members do the same)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):  # a closed or broken pipe: nothing left to tell
            if stream is not None:
                stream.flush()


def exit_code_of(value: object) -> int:
    """What the interpreter does with an uncaught SystemExit's argument (or a called function's return value)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def _unshare_pid() -> bool:
    try:  # os.unshare is Python 3.12+
        return _LIBC is not None and int(_LIBC.unshare(CLONE_NEWPID)) == 0
    except (OSError, AttributeError):
        return False


def _become_pid1(close: list[int], tell: socket.socket | None = None) -> None:
    """Fork the program as PID 1 of a new PID namespace, as a container runtime starts it, so it gets init's signal
    semantics (the kernel drops a signal PID 1 has no handler for; pid_namespaces(7)). This process stays outside,
    the session's leader the client signals, and ends as PID 1 ends, after telling ``tell`` how PID 1 ended: the
    container's end is known before this copy of the server is torn down. Returns in PID 1, or here when no
    namespace can be made (not root)."""
    if not _unshare_pid():
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group's SIGTERM is for PID 1 only
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        set_pdeathsig(signal.SIGKILL)  # not inherited across fork
        return
    for fd in close:  # the log ends when PID 1's output does; PID 1 says when it is ready
        with contextlib.suppress(OSError):
            os.close(fd)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if tell is not None:
        with contextlib.suppress(OSError):
            _send(tell, {"ended": code})
    _mirror(code)


def _mirror(code: int) -> NoReturn:
    """Exit as ``code`` says (negative: by that signal)."""
    if code < 0:
        if -code not in (signal.SIGKILL, signal.SIGSTOP):  # those cannot be caught, so need no resetting
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        code = 128 - code  # PID 1 of a namespace may not die of its own signal
    os._exit(code & 0xFF)


def pid1_exec(argv: list[str]) -> NoReturn:
    """``python -I -S server.py --pid1 COMMAND...``: COMMAND as PID 1 (unshare(1) of util-linux 2.38 cannot report
    a child that SIGKILL ended: it exits 1)."""
    _become_pid1([])
    os.execvp(argv[0], argv)  # noqa: S606 - the container's argv, never a shell


def _fresh_stdio(env: dict[str, str]) -> None:
    # New streams on fds 0/1/2 with the buffering the process's environment asks for.
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    encoding = env.get("PYTHONIOENCODING", "utf-8").split(":")[0] or "utf-8"
    raw_out = io.FileIO(1, "w", closefd=False)
    raw_err = io.FileIO(2, "w", closefd=False)
    out_buf: Any = raw_out if unbuffered else io.BufferedWriter(raw_out)
    sys.stdout = io.TextIOWrapper(out_buf, encoding=encoding, write_through=unbuffered)
    sys.stderr = io.TextIOWrapper(raw_err, encoding=encoding, errors="backslashreplace", write_through=True)
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding=encoding)


def _run(req: dict[str, Any], base_path: list[str]) -> int:
    mode, target, args = req["mode"], req["target"], list(req["args"])
    if mode == "call":
        module, _, func = target.partition(":")
        return exit_code_of(getattr(importlib.import_module(module), func)(args))
    pythonpath = [p for p in req["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    if mode == "m":
        first = os.getcwd()
        sys.argv = ["-m", *args]  # runpy replaces argv[0] with the module's file
    elif mode == "c":
        first = ""
        sys.argv = ["-c", *args]
    elif mode == "script":
        first = os.path.dirname(os.path.realpath(target))
        sys.argv = [target, *args]
    else:
        raise ValueError(f"kannon fork server: unknown mode {mode!r}")
    sys.path[:] = [first, *(os.path.abspath(p) for p in pythonpath), *base_path]
    importlib.invalidate_caches()
    if mode == "m":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    elif mode == "c":
        main = types.ModuleType("__main__")
        sys.modules["__main__"] = main
        exec(compile(target, "<string>", "exec"), main.__dict__)  # noqa: S102 - the container's own `python -c`
    else:
        runpy.run_path(target, run_name="__main__")
    return 0


def _program(req: dict[str, Any], out_fd: int, taken: float, base_path: list[str]) -> int:
    """The requested program in this (set-up) process; its exit code."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    for fd in {null, out_fd} - {0, 1, 2}:
        os.close(fd)
    os.chdir(req["cwd"])
    env = dict(req["env"])
    if req.get("started_env"):
        env[req["started_env"]] = repr(taken)
    if req.get("started_cpu_env"):  # what this process had used before (a reused one: its earlier requests)
        env[req["started_cpu_env"]] = repr(_cpu_seconds())
    os.environ.clear()
    os.environ.update(env)
    fresh = req["mode"] != "call"
    if fresh:
        _fresh_stdio(env)
    else:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    try:
        code = _run(req, base_path)
    except SystemExit as exc:
        code = exit_code_of(exc.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        code = -signal.SIGINT
    except BaseException:  # the interpreter prints any uncaught exception and exits 1
        traceback.print_exc()
        code = 1
    if fresh:  # what interpreter shutdown does before exiting: wait for non-daemon threads, then atexit callbacks
        shutdown = getattr(threading, "_shutdown", None)
        if shutdown is not None:
            with contextlib.suppress(BaseException):
                shutdown()
        atexit._run_exitfuncs()
    flush_stdio()
    return code


def _own_cgroup(parent: str) -> str | None:
    """Join a new cgroup under ``parent`` (best effort): moving a process into a cgroup waits for an RCU grace
    period on cgroup v1, which a spare pays while it waits rather than when its request comes."""
    path = os.path.join(parent, f"kannon-spare-{os.getpid()}")
    try:
        os.mkdir(path)
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
        return path
    except OSError:
        with contextlib.suppress(OSError):
            os.rmdir(path)
        return None


def _take_cgroup(spec: dict[str, Any], own: str | None) -> None:
    """Be in cgroup ``spec["path"]`` with ``spec["files"]`` (its limits) written: our own cgroup renamed when it has
    the same parent (cgroup v1 renames; the process stays where it is), else that cgroup made and joined."""
    path = spec["path"]
    try:
        if own is None or os.path.dirname(own) != os.path.dirname(path):
            raise OSError("no cgroup of our own there")
        os.rename(own, path)
    except OSError:
        try:
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        except OSError:
            return  # best effort, as a cold process's limits are
    for name, value in spec.get("files") or ():
        with contextlib.suppress(OSError), open(os.path.join(path, name), "w") as f:
            f.write(value)


def _spare(sock: socket.socket, server: int, close: list[int], base_path: list[str],
           cgroups: str | None = None) -> NoReturn:  # fmt: skip
    """A process forked ahead of its request: wait for it (in a cgroup of its own under ``cgroups``), set up, run
    the program, exit as it did -- or, for a ``reuse`` request that ended cleanly, wait for the next one."""
    code, report = 128, False
    try:
        signal.set_wakeup_fd(-1)
        for fd in close:
            with contextlib.suppress(OSError):
                os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        set_pdeathsig(signal.SIGKILL)
        if os.getppid() != server:  # the server died before prctl took effect
            os._exit(128 + signal.SIGKILL)
        os.setsid()
        own = _own_cgroup(cgroups) if cgroups else None
        served = 0
        while True:
            msg, fds, _flags, _addr = socket.recv_fds(sock, MAX_MSG, 1)
            if not msg or len(fds) != 1:
                os._exit(0)  # retired by the server
            taken = time.monotonic()
            req = json.loads(msg)
            if served == 0:  # a reused process is handed only requests without these (the server sees to it)
                if req.get("cgroup"):
                    _take_cgroup(req["cgroup"], own)
                elif req.get("cgroup_procs"):
                    try:
                        with open(req["cgroup_procs"], "w") as f:
                            f.write(str(os.getpid()))
                    except OSError:
                        pass  # best effort, as a cold process's limits are
                if req.get("pid_namespace"):
                    _become_pid1([fds[0]], sock)
            clean = _Clean(req) if _reusable(req) and own is None else None  # a cgroup's peak is not resettable
            sock.send(b"ok")  # the request is ours now: from here on, how it ends is the program's outcome
            report = bool(req.get("report"))
            if not report:
                sock.close()
            code = _program(req, fds[0], taken, base_path)
            limit = int(req.get("reuse_max") or 0)  # requests a process serves at most (0: no bound)
            if clean is None or code != 0 or not clean.restore() or 0 < limit <= served + 1:
                break
            _release_stdio()
            _send(sock, {"code": code, "again": True})  # and wait for the next request
            report, served = False, served + 1
    except BaseException:  # set-up failed: say so on whatever stderr there is
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        if report:
            with contextlib.suppress(BaseException):
                _release_stdio()  # the client sees its output's EOF first, then how it ended
                _send(sock, {"code": code})
        _mirror(code)


def _release_stdio() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)


def _cpu_seconds() -> float:
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _reusable(req: dict[str, Any]) -> bool:
    return bool(req.get("reuse") and req.get("report") and req.get("mode") == "call"
                and not req.get("cgroup") and not req.get("cgroup_procs") and not req.get("pid_namespace"))  # fmt: skip


class _Clean:
    """What a reused process must look like again after a request: taken before it, checked and put back after.

    Put back: signal handlers and the wakeup fd, ``sys.path``, the peak resident set (so the next request's peak is
    its own). Checked, and the process retired (it exits as it would have) if not so: no thread but the main one
    and those the request names (``keep_threads``), no process of its own left (it is their subreaper, so orphans
    of the program count too)."""

    def __init__(self, req: dict[str, Any]) -> None:
        if _LIBC is not None:
            _LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1)
        self.keep = set(req.get("keep_threads") or ())
        self.handlers = {s: signal.getsignal(s) for s in catchable_signals()}
        self.path = list(sys.path)
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, the peak a child measures itself by

    def restore(self) -> bool:
        signal.set_wakeup_fd(-1)
        for signum, handler in self.handlers.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                if signal.getsignal(signum) is not handler and handler is not None:
                    signal.signal(signum, handler)
        sys.path[:] = self.path
        if any(t is not threading.main_thread() and t.name not in self.keep for t in threading.enumerate()):
            return False
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True  # none left
            if pid == 0:
                return False  # one still runs


def catchable_signals() -> list[signal.Signals]:
    """Every signal a handler can be installed for (kannon.childwarm puts them back the same way)."""
    return [s for s in signal.valid_signals() if isinstance(s, signal.Signals)
            and s not in (signal.SIGKILL, signal.SIGSTOP)]  # fmt: skip


class _Handoff:
    """A request handed to a spare that has not confirmed it yet (its socket is watched for the answer)."""

    def __init__(self, pid: int, sock: socket.socket, req: dict[str, Any], out_fd: int, tries: int) -> None:
        self.pid, self.sock, self.req, self.out_fd, self.tries = pid, sock, req, out_fd, tries
        self.deadline = time.monotonic() + SPARE_ACK_TIMEOUT
        self.exit_status: int | None = None  # reaped before its answer was read: reported right after "started"


class _Server:
    """The loop. Single-threaded on purpose: it only forks, hands out requests, reaps and reports. It never waits for
    one process: a spare's confirmation arrives on the selector, so requests that come together start side by side
    (a spare's set-up -- joining a cgroup, forking PID 1 -- takes milliseconds that would otherwise add up)."""

    def __init__(self, sock: socket.socket, base_path: list[str]) -> None:
        self.sock, self.base_path = sock, base_path
        self.children: dict[int, Any] = {}  # pid -> request id
        # fd -> a started process's socket, request id, pid: kept until EOF for its report or (PID namespace) its end
        self.reports: dict[int, tuple[socket.socket, Any, int]] = {}
        self.handoffs: dict[int, _Handoff] = {}  # fd of a spare's socket -> the request it was handed
        self.spares: list[tuple[int, socket.socket]] = []
        self.reusable: list[tuple[int, socket.socket]] = []  # served a "reuse" request cleanly; wait for another
        self.want_spares = 0
        self.spare_cgroups: str | None = None  # where spares make a cgroup of their own ("import"'s spare_cgroups)
        self.idle_since = time.monotonic()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.sel = selectors.DefaultSelector()
        self.sel.register(sock, selectors.EVENT_READ)
        self.sel.register(self.wake_r, selectors.EVENT_READ)

    def _timeout(self) -> float | None:
        now, timeouts = time.monotonic(), [h.deadline for h in self.handoffs.values()]
        if len(self.spares) < self.want_spares:  # keep one ready at all times: a stream of short requests is never
            timeouts.append(self.idle_since + SPARE_IDLE if self.spares else now)  # idle
        return max(0.0, min(timeouts) - now) if timeouts else None

    def loop(self) -> None:
        while True:
            events = self.sel.select(self._timeout())
            if events:
                self.idle_since = time.monotonic()
            for key, _ in events:
                if key.fileobj is self.sock:
                    if not self._on_request():
                        return
                elif key.fileobj == self.wake_r:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self.wake_r, 512):
                            pass
                    self._reap()
                elif key.fd in self.handoffs:
                    self._on_answer(self.handoffs[key.fd])
                elif key.fd in self.reports:
                    self._on_report(key.fd)
            # After the batch: a retry may reuse the descriptor number of a socket that is in it.
            now = time.monotonic()
            for h in [h for h in self.handoffs.values() if h.deadline <= now]:
                self._failed_handoff(h)
            if not events and len(self.spares) < self.want_spares and (
                    not self.spares or now >= self.idle_since + SPARE_IDLE):  # fmt: skip
                self.spares.append(self._fork_spare())

    def _fork_spare(self, *also_close: int) -> tuple[int, socket.socket]:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Every fd of ours is closed in the spare: a stray copy of some process's output would delay its EOF.
        close = [self.sock.fileno(), self.wake_r, self.wake_w, mine.fileno(), *also_close, *self.reports,
                 *self.handoffs, *(h.out_fd for h in self.handoffs.values()), *(s.fileno() for _, s in self.spares),
                 *([self.sel.fileno()] if hasattr(self.sel, "fileno") else [])]  # fmt: skip
        flush_stdio()  # nothing buffered here may be written twice
        server = os.getpid()
        pid = os.fork()
        if pid == 0:
            _spare(theirs, server, close, self.base_path, self.spare_cgroups)
        theirs.close()
        return pid, mine

    def _retire(self, pid: int, sock: socket.socket) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # reaped as any child is
        sock.close()

    def _on_request(self) -> bool:
        msg, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MSG, 1)
        if not msg:
            return False
        req = json.loads(msg)
        if req.get("op") == "run" and len(fds) == 1:
            self._hand(req, fds[0], len(self.spares) + len(self.reusable) + 3)
            return True
        for fd in fds:
            os.close(fd)
        if req.get("op") == "signal":  # only while that request runs: its process may serve another one next
            for pid in [pid for pid, rid in self.children.items() if rid == req.get("id")]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, int(req["signal"]))
            return True
        if req.get("op") == "import":
            loaded, failed = _import(req.get("modules", []))
            for pid, sock in self.spares:  # forked before these imports: replace them
                self._retire(pid, sock)
            self.spares.clear()
            self.want_spares = int(req.get("spares", 0))
            self.spare_cgroups = req.get("spare_cgroups") or None
            self.idle_since = 0.0  # the client asked now, so it is busy elsewhere: fork them at once
            _send(self.sock, {"imported": loaded, "failed": failed})
        else:
            _send(self.sock, {"failed": req.get("id"), "error": f"not a request with one descriptor: {req.get('op')}"})
        return True

    def _hand(self, req: dict[str, Any], out_fd: int, tries: int) -> None:
        """Hand the request to a spare (forked now if none is ready); its answer comes through the loop."""
        while tries > 0:
            tries -= 1
            if _reusable(req) and self.reusable:
                pid, sock = self.reusable.pop()  # the most recently used: its pages are the warmest
            else:
                pid, sock = self.spares.pop(0) if self.spares else self._fork_spare(out_fd)
            try:
                socket.send_fds(sock, [json.dumps(req).encode()], [out_fd])
            except OSError:
                self._retire(pid, sock)
                continue
            self.handoffs[sock.fileno()] = _Handoff(pid, sock, req, out_fd, tries)
            self.sel.register(sock, selectors.EVENT_READ)
            return
        os.close(out_fd)
        _send(self.sock, {"failed": req.get("id"), "error": "the fork server could not start a process for it"})

    def _on_answer(self, h: _Handoff) -> None:
        answer = b""
        with contextlib.suppress(OSError):
            answer = h.sock.recv(16)
        if answer != b"ok":
            self._failed_handoff(h)
            return
        del self.handoffs[h.sock.fileno()]
        os.close(h.out_fd)
        rid = h.req.get("id")
        _send(self.sock, {"started": rid, "pid": h.pid})
        if h.req.get("report") or h.req.get("pid_namespace"):
            self.reports[h.sock.fileno()] = (h.sock, rid, h.pid)  # stays registered: its report or end comes next
        else:
            self.sel.unregister(h.sock)
            h.sock.close()
        if h.exit_status is None:
            self.children[h.pid] = rid
        else:
            self._drain(h.pid)
            _send(self.sock, {"exited": rid, "pid": h.pid, "code": os.waitstatus_to_exitcode(h.exit_status)})
        if self.want_spares:  # as many spares as processes run at once, up to a bound
            self.want_spares = min(MAX_SPARES, max(self.want_spares, len(self.children)))

    def _failed_handoff(self, h: _Handoff) -> None:
        # It died while waiting (a stray signal, the OOM killer) or never got going: the request goes to the next
        # one rather than failing for it.
        del self.handoffs[h.sock.fileno()]
        self.sel.unregister(h.sock)
        if h.exit_status is None:  # not yet reaped: still ours to kill
            self._retire(h.pid, h.sock)
        else:
            h.sock.close()
        self._hand(h.req, h.out_fd, h.tries)

    def _on_report(self, fd: int) -> bool:
        """Pass on what a started process says: its report, or PID 1's end from the process that reaped it; at EOF
        (they have all exited) forget it. False when nothing (more) is waiting."""
        sock, rid, pid = self.reports[fd]
        try:
            data = sock.recv(MAX_MSG, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            del self.reports[fd]
            self.sel.unregister(sock)
            sock.close()
            return False
        with contextlib.suppress(ValueError, KeyError, TypeError):
            msg = json.loads(data)
            if "ended" in msg:
                _send(self.sock, {"ended": rid, "pid": pid, "code": int(msg["ended"])})
            elif msg.get("again") and self.children.get(pid) == rid:
                # Done, and waiting for another request: no longer this request's process.
                _send(self.sock, {"reported": rid, "code": int(msg["code"]), "again": True})
                del self.reports[fd], self.children[pid]
                self.sel.unregister(sock)
                self.reusable.append((pid, sock))
                while len(self.reusable) > MAX_SPARES:
                    self._retire(*self.reusable.pop(0))
                return False
            else:
                _send(self.sock, {"reported": rid, "code": int(msg["code"])})
        return True

    def _drain(self, pid: int) -> None:
        # What a reaped process said goes out before its "exited", whichever the selector saw first.
        for fd in [fd for fd, (_s, _r, p) in self.reports.items() if p == pid]:
            while fd in self.reports and self._on_report(fd):
                pass

    def _reap(self) -> None:
        for pid, status in reaped():
            if pid in self.children:
                rid = self.children.pop(pid)
                self._drain(pid)
                _send(self.sock, {"exited": rid, "pid": pid, "code": os.waitstatus_to_exitcode(status)})
            for h in self.handoffs.values():  # ended before its answer was read (the answer may still be queued)
                if h.pid == pid:
                    h.exit_status = status
            for pool in (self.spares, self.reusable):
                for dead in [s for s in pool if s[0] == pid]:  # died while waiting
                    dead[1].close()
                    pool.remove(dead)
            self._forget_cgroup(pid)

    def _forget_cgroup(self, pid: int) -> None:
        # The cgroup a reaped spare made for itself, unless a request took it (renamed).
        if self.spare_cgroups:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(self.spare_cgroups, f"kannon-spare-{pid}"))

    def kill_all(self) -> None:
        for pid in [*self.children, *(h.pid for h in self.handoffs.values())]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        for pid, _sock in self.reusable:  # what their requests started is in their groups
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        for pid, _sock in self.spares:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        # Reap them before exiting, so that once the client has reaped the server nothing it started is left.
        for pid in [*self.children, *(h.pid for h in self.handoffs.values()),
                    *(pid for pid, _ in [*self.spares, *self.reusable])]:  # fmt: skip
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self._forget_cgroup(pid)


def _import(modules: list[str]) -> tuple[list[str], list[str]]:
    """Import each ``MOD``; a ``MOD:FUNC`` entry also calls ``FUNC()`` once, to warm what importing alone does not
    (kannon.childwarm). In order: a call may use what the entries before it imported."""
    loaded, failed = [], []
    for name in modules:
        module, _, func = name.partition(":")
        try:
            imported = importlib.import_module(module)
            if func:
                getattr(imported, func)()
            loaded.append(name)
        except Exception as exc:  # e.g. a module this interpreter does not have
            failed.append(f"{name}: {exc.__class__.__name__}: {exc}")
    gc.collect()
    gc.freeze()  # children's collections then leave the inherited heap alone (no copy-on-write of it)
    return loaded, failed


def serve(sock: socket.socket, modules: list[str], parent: int | None = None) -> None:
    """Import ``modules``, then serve ``sock`` until EOF, SIGTERM or ``parent``'s death."""
    if parent is not None:
        set_pdeathsig(signal.SIGTERM)
        if os.getppid() != parent:
            return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the client, which ends us through the socket
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds to the clean-up below
    base_path = sys.path[1:]  # without the first entry (-c's "", the script's or -m's directory)
    loaded, failed = _import(modules)
    server = _Server(sock, base_path)
    try:
        _send(sock, {"ready": os.getpid(), "loaded": loaded, "failed": failed})
        server.loop()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client is gone: end as at EOF
    finally:
        server.kill_all()


def main(argv: list[str]) -> None:
    if argv[1:2] == ["--pid1"]:
        pid1_exec(argv[2:])
    rest, parent = argv[2:], None
    if rest[:1] == ["--parent"]:
        parent, rest = int(rest[1]), rest[2:]
    serve(socket.socket(fileno=int(argv[1])), rest, parent)


if __name__ == "__main__":
    main(sys.argv)
