"""Warm process pods: a kannon fork server (:mod:`kannon.forkserver`, the one the local backend uses) per
interpreter executable, run by path under it, which imports the warm modules once and forks one process per
container."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import threading
import uuid
from typing import Any

from kannon.forkserver.client import ForkServer
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


# Processes a zygote keeps forked ahead of its pods (it keeps as many as its pods run at once, up to 16): a pod's
# start then costs no fork of the whole pre-imported interpreter, which on a loaded 2-core machine took 6-10 ms.
SPARES = 4


class _Zygote:
    """One pre-imported interpreter (kannon's fork server, run by path under the pod's interpreter) and the thread
    reading its reports.

    ``spares`` only with PID namespaces: the container's program is then PID 1, forked once the pod's request
    reached its spare, so its process start -- what a child measures its wall time from (kannon.measure) -- is the
    pod's. Without one, the program would be the spare itself, started long before its pod."""

    def __init__(self, exe: str, modules: list[str], env: dict[str, str], cwd: str, spares: int = 0,
                 spare_cgroups: str | None = None) -> None:  # fmt: skip
        self.exe = exe
        self.cond = threading.Condition()
        self.started: dict[int, dict[str, Any]] = {}
        self.exited: dict[int, int] = {}  # pid -> how its container ended (PID 1's end, else the process's)
        self.ended: set[int] = set()  # PID 1 ended, the reported process not reaped yet
        self.reaped: set[int] = set()  # reaped, its handle not cleaned up yet
        self.dead = False
        self._next_id = 0
        self._id_lock = threading.Lock()
        try:
            self.server = ForkServer.spawn(exe, modules, env, cwd)
            hello = self.server.hello(timeout=120)  # importing gokart on a loaded 2-core machine takes seconds
        except (OSError, RuntimeError) as exc:
            raise StartError(f"warm start of {exe}: {exc}") from exc
        if spares:  # answered before the reader thread runs: the answer is read here
            try:
                self.server.send({"op": "import", "modules": [], "spares": spares, "spare_cgroups": spare_cgroups})
                self.server.sock.settimeout(120)
                self.server.recv()
                self.server.sock.settimeout(None)
            except OSError as exc:
                self.server.close(timeout=5)
                raise StartError(f"warm start of {exe}: {exc}") from exc
        self.loaded: list[str] = hello["loaded"]
        self.failed: list[str] = hello["failed"]
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"zygote-{self.server.pid}")
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                msg = self.server.recv()
            except OSError:
                msg = None
            with self.cond:
                if msg is None:
                    self.dead = True
                    self.cond.notify_all()
                    return
                if "ended" in msg:  # the container ended; its wrapper (the reported process) exits next
                    self.exited[int(msg["pid"])] = int(msg["code"])
                    self.ended.add(int(msg["pid"]))
                elif "exited" in msg:
                    pid = int(msg["pid"])
                    if pid not in self.ended:
                        self.exited[pid] = int(msg["code"])
                    self.ended.discard(pid)
                    self.reaped.add(pid)
                elif "started" in msg or "failed" in msg:
                    self.started[int(msg["started"] if "started" in msg else msg["failed"])] = msg
                self.cond.notify_all()

    def start(self, mode: str, target: str, args: list[str], env: dict[str, str], cwd: str, out_fd: int,
              cgroup: dict[str, object] | None, pid_namespace: bool = False) -> int:  # fmt: skip
        with self._id_lock:
            self._next_id += 1
            rid = self._next_id
        req = {"op": "run", "id": rid, "mode": mode, "target": target, "args": args, "env": env, "cwd": cwd,
               "cgroup": cgroup, "pid_namespace": pid_namespace}  # fmt: skip
        try:
            self.server.send(req, out_fd)
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
            # A zygote that died took its children with it (PR_SET_PDEATHSIG, see kannon.forkserver).
            return self.exited.pop(pid, -signal.SIGKILL)

    def wait_reaped(self, pid: int, timeout: float) -> None:
        """Until ``pid`` itself is gone (its cgroup can then be removed), at most ``timeout`` seconds."""
        with self.cond:
            self.cond.wait_for(lambda: pid in self.reaped or self.dead, timeout)
            self.reaped.discard(pid)

    def close(self) -> None:
        self.server.close(timeout=5)  # EOF: the server kills every child's process group and exits


class _WarmHandle:
    def __init__(self, zygote: _Zygote, pid: int, read_fd: int, out: ContainerLog, cgroup: _MemoryCgroup | None):
        self.zygote = zygote
        self.pid = pid
        self.container_id = f"emulator://{uuid.uuid4().hex}"
        self.image_id = ""
        self.cgroup = cgroup
        self._cleaned = False
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
        if self.cgroup and not self._cleaned:
            self._cleaned = True
            self.zygote.wait_reaped(self.pid, 10)  # killed now if it still ran: only the reap is left
            self.cgroup.remove()
