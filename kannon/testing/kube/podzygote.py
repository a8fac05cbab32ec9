"""Warm process pods: a pre-imported interpreter that forks one process per container (standard library only).

Run by the emulator's process runtime as ``<image python> -c BOOT podzygote.py CONTROL_FD MODULE...`` (BOOT runs
this file with runpy), once per interpreter path. It imports MODULEs (ones that fail to import are reported and
skipped), then serves start requests on the SOCK_SEQPACKET socket CONTROL_FD: each is one JSON datagram with the
container's stdout as an attached descriptor:

    {"id": N, "mode": "m"|"c"|"script", "target": MOD|CODE|PATH, "args": [...], "env": {...}, "cwd": DIR,
     "cgroup_procs": PATH|null, "pid_namespace": BOOL}

and is answered ``{"started": N, "pid": PID}`` (or ``{"failed": N, "error": TEXT}``) once the child is in its own
session (and memory cgroup), so signalling its process group cannot miss it (with "pid_namespace", the
container's process is PID 1 of a PID namespace of its own, forked by the reported session leader).
``{"exited": PID, "code": CODE}`` follows when it ends (CODE as ``os.waitstatus_to_exitcode``: negative for a
signal). EOF on the socket (the emulator closed it, or died) kills every child's process group and ends the
zygote: nothing outlives the emulator.

Why: on one machine, every process pod's fresh interpreter re-imports gokart (~0.8 s of CPU on the 2-core machine
this was measured on), which charges what a cluster spends on other nodes to the cores the master runs on. A fork
of an interpreter that already imported it starts in milliseconds. What a warm child shares with its siblings, unlike
a real container: the modules imported here (imported under the image's environment, before any pod env applied),
the hash seed, and interpreter options read at start-up (``PYTHONWARNINGS``, ``PYTHONDONTWRITEBYTECODE``, ...).
``sys.path``, ``os.environ``, the working directory, stdout/stderr (``PYTHONUNBUFFERED`` honoured), signal
handlers, ``atexit`` and non-daemon threads at exit behave as in a fresh interpreter.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import io
import json
import os
import runpy
import select
import signal
import socket
import sys
import threading
import traceback
import types
from typing import Any

MAX_REQUEST = 1 << 22  # a pod's command line and environment: far below what an apiserver accepts in an object


def _send(sock: socket.socket, msg: dict[str, Any]) -> None:
    sock.send(json.dumps(msg).encode())


def _exit_code(value: object) -> int:
    # What the interpreter does with an uncaught SystemExit's argument.
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def _fresh_stdio(env: dict[str, str]) -> None:
    # The zygote's own streams point elsewhere; new ones on fds 0/1/2 with the buffering the pod's env asks for.
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    encoding = env.get("PYTHONIOENCODING", "utf-8").split(":")[0] or "utf-8"
    raw_out = io.FileIO(1, "w", closefd=False)
    raw_err = io.FileIO(2, "w", closefd=False)
    out_buf: Any = raw_out if unbuffered else io.BufferedWriter(raw_out)
    sys.stdout = io.TextIOWrapper(out_buf, encoding=encoding, write_through=unbuffered)
    sys.stderr = io.TextIOWrapper(raw_err, encoding=encoding, errors="backslashreplace", write_through=True)
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding=encoding)


def _run(req: dict[str, Any], base_path: list[str]) -> None:
    mode, target, args = req["mode"], req["target"], list(req["args"])
    pythonpath = [p for p in req["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    if mode == "m":
        first = os.getcwd()
        sys.argv = ["-m", *args]  # runpy replaces argv[0] with the module's file
    elif mode == "c":
        first = ""
        sys.argv = ["-c", *args]
    else:
        first = os.path.dirname(os.path.realpath(target))
        sys.argv = [target, *args]
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


CLONE_NEWPID = 0x20000000  # <linux/sched.h>


def _unshare_pid() -> bool:
    unshare = getattr(os, "unshare", None)  # Python 3.12+
    try:
        if unshare is not None:
            unshare(CLONE_NEWPID)
            return True
        import ctypes

        return int(ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWPID)) == 0
    except (OSError, AttributeError):
        return False


def _become_pid1(close: list[int]) -> None:
    """Fork the container's process as PID 1 of a new PID namespace, as a container runtime starts it, so it gets
    init's signal semantics (the kernel drops a signal PID 1 has no handler for; pid_namespaces(7)). This process
    stays outside, the session's leader the emulator signals, and ends as PID 1 ends (what `unshare --fork` does).
    Returns in PID 1, or here when no namespace can be made (not root)."""
    if not _unshare_pid():
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group's SIGTERM is for PID 1 only
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        return
    for fd in close:  # the log ends when PID 1's output does; PID 1 says when it is ready
        os.close(fd)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code < 0:
        if -code not in (signal.SIGKILL, signal.SIGSTOP):  # those cannot be caught, so need no resetting
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code & 0xFF)


def pid1_exec(argv: list[str]) -> None:
    """``python -I -S podzygote.py --pid1 COMMAND...``: the process runtime's cold path, COMMAND as PID 1 (unshare(1)
    of util-linux 2.38 cannot report a child that SIGKILL ended: it exits 1)."""
    _become_pid1([])
    os.execvp(argv[0], argv)  # noqa: S606 - the container's argv, never a shell


def _child(req: dict[str, Any], out_fd: int, ready_w: int, close: list[int], base_path: list[str]) -> None:
    code = 1
    try:
        os.setsid()
        for fd in close:
            os.close(fd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if req.get("cgroup_procs"):
            try:
                with open(req["cgroup_procs"], "w") as f:
                    f.write(str(os.getpid()))
            except OSError:
                pass  # best effort, as the cold runtime's limits
        if req.get("pid_namespace"):
            _become_pid1([out_fd, ready_w])
        os.write(ready_w, b"x")
        os.close(ready_w)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        for fd in {null, out_fd} - {0, 1, 2}:
            os.close(fd)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        _fresh_stdio(req["env"])
        try:
            _run(req, base_path)
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc.code)
        except KeyboardInterrupt:
            traceback.print_exc()
            code = -signal.SIGINT
        except BaseException:  # the interpreter prints any uncaught exception and exits 1
            traceback.print_exc()
            code = 1
        # What interpreter shutdown does before exiting: wait for non-daemon threads, then run atexit callbacks.
        shutdown = getattr(threading, "_shutdown", None)
        if shutdown is not None:
            with contextlib.suppress(BaseException):
                shutdown()
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):  # a closed or broken pipe: nothing left to tell
                stream.flush()
    except BaseException:  # set-up failed: say so on whatever stderr we have
        try:
            traceback.print_exc()
        finally:
            code = 128
    finally:
        if code < 0:
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        os._exit(code)


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[1]))
    base_path = sys.path[1:]  # without -c's "" (the working directory)
    loaded, failed = [], []
    for name in argv[2:]:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:  # e.g. a module this image does not have
            failed.append(f"{name}: {exc.__class__.__name__}: {exc}")
    gc.collect()
    gc.freeze()  # children's collections then leave the inherited heap alone (no copy-on-write of it)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the emulator ends us by closing the socket
    children: set[int] = set()
    _send(sock, {"ready": os.getpid(), "loaded": loaded, "failed": failed})
    try:
        while True:
            readable, _, _ = select.select([sock.fileno(), wake_r], [], [])
            if wake_r in readable:
                os.read(wake_r, 4096)
                while children:
                    try:
                        pid, status = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                    children.discard(pid)
                    _send(sock, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})
            if sock.fileno() in readable:
                data, fds, _, _ = socket.recv_fds(sock, MAX_REQUEST, 1)
                if not data:
                    return 0
                req = json.loads(data)
                if len(fds) != 1:
                    for fd in fds:
                        os.close(fd)
                    _send(sock, {"failed": req.get("id"), "error": "no stdout descriptor attached"})
                    continue
                ready_r, ready_w = os.pipe()
                pid = os.fork()
                if pid == 0:
                    _child(req, fds[0], ready_w, [sock.fileno(), wake_r, wake_w, ready_r], base_path)
                os.close(fds[0])
                os.close(ready_w)
                os.read(ready_r, 1)  # in its own session (and cgroup) now, or already gone
                os.close(ready_r)
                children.add(pid)
                _send(sock, {"started": req["id"], "pid": pid})
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--pid1"]:
        pid1_exec(sys.argv[2:])
    sys.exit(main(sys.argv))
