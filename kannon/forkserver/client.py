"""The client's end of a fork server (:mod:`kannon.forkserver.server`, whose docstring is the protocol): start one,
send requests, read its messages, stop it. Reading is the caller's: the local backend reads on its I/O thread, the
emulator on a thread per server."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from kannon.forkserver import server

SCRIPT = server.__file__


class ForkServer:
    """A running fork server: its pid, and our end of its SOCK_SEQPACKET socket."""

    def __init__(self, pid: int, sock: socket.socket, proc: subprocess.Popen[bytes] | None = None) -> None:
        self.pid, self.sock, self.proc = pid, sock, proc
        self._send_lock = threading.Lock()

    @classmethod
    def start(cls, parent_death: bool = True) -> ForkServer:
        """A server for this interpreter: forked from it (it then has every module imported here) when this process
        has no other thread, else a fresh interpreter (fork would copy other threads' locks mid-use). With
        ``parent_death`` it ends when this process does, even by SIGKILL."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        parent = os.getpid()
        if threading.active_count() == 1:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    mine.close()
                    server.serve(theirs, [], parent if parent_death else None)
                except BaseException:
                    code = 70  # EX_SOFTWARE
                finally:
                    os._exit(code)
            theirs.close()
            return cls(pid, mine)
        argv = [sys.executable, "-m", "kannon.forkserver.server", str(theirs.fileno())]
        if parent_death:
            argv += ["--parent", str(parent)]
        try:
            proc = subprocess.Popen(argv, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        return cls(proc.pid, mine, proc)

    @classmethod
    def spawn(cls, python: str, modules: list[str], env: dict[str, str], cwd: str) -> ForkServer:
        """A server under another interpreter (which need not have kannon: the server is run by path), importing
        ``modules``. It ends when its socket closes; its stderr is a pipe, read by :meth:`hello` if it fails."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            proc = subprocess.Popen(
                [python, "-c", server.BOOT, SCRIPT, str(theirs.fileno()), *modules],
                pass_fds=[theirs.fileno()], env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # a Ctrl-C of ours reaches it as EOF, after we have killed what it started
            )  # fmt: skip
        finally:
            theirs.close()
        return cls(proc.pid, mine, proc)

    def hello(self, timeout: float) -> dict[str, Any]:
        """The server's first message (``{"ready": ...}``); RuntimeError with its stderr if it never comes."""
        self.sock.settimeout(timeout)
        try:
            msg = self.recv()
        except (OSError, ValueError):
            msg = None
        self.sock.settimeout(None)
        if msg is None or "ready" not in msg:
            err = ""
            if self.proc is not None:
                self.proc.kill()
                err = (self.proc.communicate()[1] or b"").decode(errors="replace").strip()
            self.sock.close()
            raise RuntimeError(f"the fork server did not start: {err[-500:]}")
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        return msg

    def send(self, msg: dict[str, Any], fd: int | None = None) -> None:
        """One request (with ``fd`` attached); OSError if the server is gone."""
        data = json.dumps(msg).encode()
        with self._send_lock:
            if fd is None:
                self.sock.send(data)
            else:
                socket.send_fds(self.sock, [data], [fd])

    def recv(self) -> dict[str, Any] | None:
        """The next message; None at EOF (the server is gone)."""
        data = self.sock.recv(server.MAX_MSG)
        return dict(json.loads(data)) if data else None

    def close(self, timeout: float = 10) -> None:
        """EOF for the server (it kills what it started and exits), then reap it; SIGKILL after ``timeout``."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            return
        if not wait_exit(self.pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)


def wait_exit(pid: int, timeout: float) -> bool:
    """Reap our child ``pid``, waiting at most ``timeout`` for it to exit (a pidfd where the OS has one); whether
    it is gone."""
    try:
        try:
            pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):  # not Linux >= 5.3, or filtered by a sandbox
            pidfd = None
        if pidfd is not None:
            try:
                select.select([pidfd], [], [], timeout)
            finally:
                os.close(pidfd)
            return os.waitpid(pid, os.WNOHANG)[0] != 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return True
            time.sleep(0.005)  # bounded: no pidfd on this OS; the server exits right after EOF
        return False
    except ChildProcessError:
        return True
