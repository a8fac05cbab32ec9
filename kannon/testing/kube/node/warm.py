"""Warm process pods: the client side of podzygote.py (one pre-imported interpreter per executable, forking one
process per container)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

from kannon.testing.kube.node.cgroups import _MemoryCgroup
from kannon.testing.kube.node.logs import ContainerLog
from kannon.testing.kube.node.runtime import StartError, _exit_code

_PYTHON_NAME = re.compile(r"python[0-9.]*")


def warm_command(argv: list[str], env: dict[str, str]) -> tuple[str, str, str, list[str]] | None:
    """(interpreter path, mode, target, args) when argv is ``python -m MOD ...``, ``python -c CODE ...`` or
    ``python SCRIPT ...`` (no interpreter options), which a zygote of that interpreter can run; else None."""
    if len(argv) < 2 or not _PYTHON_NAME.fullmatch(os.path.basename(argv[0])):
        return None
    exe = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH", os.defpath))
    if exe is None:
        return None
    if argv[1] in ("-m", "-c"):
        return (exe, argv[1][1], argv[2], argv[3:]) if len(argv) >= 3 else None
    if argv[1].startswith("-"):
        return None
    return exe, "script", argv[1], argv[2:]


class _Zygote:
    """One pre-imported interpreter (kannon/testing/kube/podzygote.py) and the thread reading its reports."""

    SCRIPT = str(Path(__file__).parent.parent / "podzygote.py")
    BOOT = "import runpy, sys; sys.argv.pop(0); runpy.run_path(sys.argv[0], run_name='__main__')"

    def __init__(self, exe: str, modules: list[str], env: dict[str, str], cwd: str) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = ours
        self.exe = exe
        self.cond = threading.Condition()
        self.started: dict[int, dict[str, Any]] = {}
        self.exited: dict[int, int] = {}
        self.dead = False
        self._next_id = 0
        self._send_lock = threading.Lock()
        try:
            self.proc = subprocess.Popen(
                # Through -c and runpy: run as a script, its directory (with our selectors.py) would shadow stdlib.
                [exe, "-c", self.BOOT, self.SCRIPT, str(theirs.fileno()), *modules],
                pass_fds=[theirs.fileno()],
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # our own Ctrl-C reaches it as EOF on the socket, after the pods are killed
            )
        finally:
            theirs.close()
        ours.settimeout(120)  # importing gokart on a loaded 2-core machine takes seconds, not minutes
        try:
            hello = json.loads(ours.recv(1 << 16) or b"null")
        except (OSError, ValueError):
            hello = None
        ours.settimeout(None)
        if not isinstance(hello, dict) or "ready" not in hello:
            self.proc.kill()
            err = self.proc.communicate()[1].decode(errors="replace").strip()
            raise StartError(f"warm start of {exe}: the zygote did not start: {err[-500:]}")
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.loaded: list[str] = hello["loaded"]
        self.failed: list[str] = hello["failed"]
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"zygote-{self.proc.pid}")
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                data = b""
            with self.cond:
                if not data:
                    self.dead = True
                    self.cond.notify_all()
                    return
                msg = json.loads(data)
                if "exited" in msg:
                    self.exited[msg["exited"]] = msg["code"]
                else:
                    self.started[msg.get("started", msg.get("failed"))] = msg
                self.cond.notify_all()

    def start(self, mode: str, target: str, args: list[str], env: dict[str, str], cwd: str, out_fd: int,
              cgroup_procs: str | None, pid_namespace: bool = False) -> int:  # fmt: skip
        with self._send_lock:
            self._next_id += 1
            rid = self._next_id
            req = {"id": rid, "mode": mode, "target": target, "args": args, "env": env, "cwd": cwd,
                   "cgroup_procs": cgroup_procs, "pid_namespace": pid_namespace}  # fmt: skip
            try:
                socket.send_fds(self.sock, [json.dumps(req).encode()], [out_fd])
            except OSError as exc:
                raise StartError(f"warm start of {self.exe}: the zygote is gone ({exc})") from exc
        with self.cond:
            self.cond.wait_for(lambda: rid in self.started or self.dead)
            msg = self.started.pop(rid, None)
        if msg is None or "pid" not in msg:
            raise StartError(f"warm start of {self.exe}: {msg['error'] if msg else 'the zygote is gone'}")
        return int(msg["pid"])

    def wait(self, pid: int) -> int:
        with self.cond:
            self.cond.wait_for(lambda: pid in self.exited or self.dead)
            # A zygote that died took its children with it (they were killed, see podzygote.py).
            return self.exited.pop(pid, -signal.SIGKILL)

    def close(self) -> None:
        # EOF makes the zygote kill every child's process group and exit.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()


class _WarmHandle:
    def __init__(self, zygote: _Zygote, pid: int, read_fd: int, out: ContainerLog, cgroup: _MemoryCgroup | None):
        self.zygote = zygote
        self.pid = pid
        self.container_id = f"emulator://{uuid.uuid4().hex}"
        self.image_id = ""
        self.cgroup = cgroup
        self._reader = threading.Thread(target=self._pump, args=(read_fd, out), daemon=True, name=f"log-{pid}")
        self._reader.start()

    def _pump(self, read_fd: int, out: ContainerLog) -> None:
        with open(read_fd, "rb") as stream:
            for line in iter(stream.readline, b""):
                out.append(line)

    def wait(self) -> tuple[int, bool]:
        code = self.zygote.wait(self.pid)
        self._reader.join(timeout=5)
        oom = self.cgroup.oom_killed() if self.cgroup else False
        return _exit_code(code), oom

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def cleanup(self) -> None:
        self.signal(signal.SIGKILL)
        if self.cgroup:
            self.cgroup.remove()
