"""The emulated node: scheduler check, kubelet pod workers, container logs, and two container runtimes.

Pod status shapes follow the pod lifecycle page (kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/):
phase Pending -> Running -> Succeeded/Failed, container states waiting{reason} / running{startedAt} /
terminated{exitCode, reason}, pod conditions PodScheduled / PodReadyToStartContainers / Initialized /
ContainersReady / Ready, and DisruptionTarget for disruptions
(kubernetes.io/docs/concepts/workloads/pods/disruptions/#pod-disruption-conditions).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from kannon.testing.kube import configmaps, secrets
from kannon.testing.kube.errors import ApiError, bad_request
from kannon.testing.kube.faults import Faults
from kannon.testing.kube.store import Change, Obj, Store, now_iso
from kannon.testing.kube.validation import JOB_NAME_LABEL, parse_quantity

log = logging.getLogger("kannon.testing.kube")

NODE_NAME = "kannon-emulator-node"
TERMINAL = ("Succeeded", "Failed")


def is_terminal(pod: Obj) -> bool:
    return pod.get("status", {}).get("phase") in TERMINAL


def _cond(ctype: str, status: str, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": now_iso()}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def set_condition(status: dict[str, Any], cond: dict[str, Any]) -> None:
    """Replace the condition of the same type, keeping lastTransitionTime when its status did not change."""
    conds = status.setdefault("conditions", [])
    for i, c in enumerate(conds):
        if c["type"] == cond["type"]:
            if c.get("status") == cond["status"]:
                cond["lastTransitionTime"] = c.get("lastTransitionTime", cond["lastTransitionTime"])
            conds[i] = cond
            return
    conds.append(cond)


# --- container logs -------------------------------------------------------------------------------------------------


class ContainerLog:
    """The log of one container instance: complete lines with their timestamps, plus a 'done' flag for follow."""

    MAX_LINES = 200_000

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.lines: list[tuple[str, bytes]] = []
        self.dropped = 0
        self.done = False

    def append(self, line: bytes) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self.cond:
            self.lines.append((stamp, line if line.endswith(b"\n") else line + b"\n"))
            if len(self.lines) > self.MAX_LINES:
                del self.lines[: len(self.lines) - self.MAX_LINES]
                self.dropped += 1
            self.cond.notify_all()

    def finish(self) -> None:
        with self.cond:
            self.done = True
            self.cond.notify_all()

    def read_from(self, index: int, timeout: float | None) -> tuple[list[tuple[str, bytes]], int, bool]:
        """Lines from `index` on, waiting up to `timeout` for new ones; returns (lines, next index, done)."""
        with self.cond:
            if timeout and index >= len(self.lines) and not self.done:
                self.cond.wait(timeout)
            chunk = self.lines[index:]
            return chunk, index + len(chunk), self.done and index + len(chunk) >= len(self.lines)


# --- env and $(VAR) expansion -------------------------------------------------------------------------------------


def expand(value: str, env: dict[str, str]) -> str:
    """$(VAR) expansion of env values, command and args (k8s.io/kubernetes/third_party/forked/golang/expansion):
    defined references are replaced, undefined ones stay literal, $$ escapes a $."""
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "$" and i + 1 < len(value):
            nxt = value[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = value.find(")", i + 2)
                if end != -1:
                    name = value[i + 2 : end]
                    out.append(env[name] if name in env else value[i : end + 1])
                    i = end + 1
                    continue
        out.append(value[i])
        i += 1
    return "".join(out)


class ConfigError(Exception):
    """CreateContainerConfigError: the container's configuration references something that does not exist."""


def _field_ref(pod: Obj, path: str) -> str:
    meta = pod["metadata"]
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": pod["spec"].get("nodeName"),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName"),
        "status.hostIP": "127.0.0.1",
        "status.podIP": "127.0.0.1",
    }
    if path not in simple:
        raise ConfigError(f'unsupported fieldRef "{path}"')
    return str(simple[path] or "")


def _resource_ref(container: Obj, ref: dict[str, Any]) -> str:
    section, _, name = str(ref.get("resource", "")).partition(".")
    res = container.get("resources") or {}
    raw = (res.get(section) or {}).get(name)
    divisor = parse_quantity(ref.get("divisor", "1"))
    if raw is None:
        # Unset limits fall back to node allocatable; report something large and stable.
        return str(os.cpu_count() or 1) if name == "cpu" else str(64 * 2**30)
    value = parse_quantity(raw) / divisor
    return str(int(value.to_integral_value(rounding="ROUND_CEILING")))


def container_env(pod: Obj, container: Obj, base: dict[str, str], store: Store | None = None) -> dict[str, str]:
    """Compose a container's environment in declaration order, as the kubelet does; raise ConfigError.
    Secrets and ConfigMaps are read from ``store``: the emulator's, or a real API server's through
    kannon.testing.node's ApiStore."""
    try:
        return _container_env(pod, container, base, store)
    except secrets.SecretMissing as exc:
        raise ConfigError(str(exc)) from exc


_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")  # keys that are no valid variable name are skipped


def _config_map(store: Store | None, ns: str, ref: dict[str, Any]) -> dict[str, str] | None:
    """A ConfigMap's ``data`` (env sources take no ``binaryData``), None when the store has no such ConfigMap."""
    obj = store.get("configmaps", ns, str(ref.get("name") or "")) if store is not None else None
    return None if obj is None else dict(obj.get("data") or {})


def _container_env(pod: Obj, container: Obj, base: dict[str, str], store: Store | None) -> dict[str, str]:
    env = dict(base)
    env["HOSTNAME"] = pod["metadata"]["name"]
    ns = pod["metadata"].get("namespace", "")
    for src in container.get("envFrom") or []:
        if src.get("secretRef") and store is not None:
            env.update(secrets.env_from(store, ns, src["secretRef"], str(src.get("prefix") or "")))
            continue
        data = _config_map(store, ns, src["configMapRef"]) if src.get("configMapRef") else None
        if data is not None:
            prefix = str(src.get("prefix") or "")
            env.update({prefix + k: v for k, v in data.items() if _ENV_NAME.fullmatch(prefix + k)})
            continue
        ref = src.get("configMapRef") or src.get("secretRef")
        kind = "configmap" if src.get("configMapRef") else "secret"
        if ref and not ref.get("optional"):
            raise ConfigError(f'{kind} "{ref.get("name")}" not found')
    for item in container.get("env") or []:
        name = item["name"]
        if item.get("valueFrom"):
            vf = item["valueFrom"]
            if vf.get("fieldRef"):
                env[name] = _field_ref(pod, vf["fieldRef"]["fieldPath"])
            elif vf.get("resourceFieldRef"):
                env[name] = _resource_ref(container, vf["resourceFieldRef"])
            elif vf.get("secretKeyRef") and store is not None:
                value = secrets.key_ref(store, ns, vf["secretKeyRef"])
                if value is not None:
                    env[name] = value
            elif vf.get("configMapKeyRef") and (data := _config_map(store, ns, vf["configMapKeyRef"])) is not None:
                ref = vf["configMapKeyRef"]
                if ref.get("key") in data:
                    env[name] = data[ref["key"]]
                elif not ref.get("optional"):
                    raise ConfigError(f"couldn't find key {ref.get('key')} in ConfigMap {ns}/{ref.get('name')}")
            else:
                ref = vf.get("secretKeyRef") or vf.get("configMapKeyRef") or {}
                kind = "secret" if vf.get("secretKeyRef") else "configmap"
                if not ref.get("optional"):
                    raise ConfigError(f'{kind} "{ref.get("name")}" not found')
        else:
            env[name] = expand(str(item.get("value") or ""), env)
    return env


# --- runtimes -----------------------------------------------------------------------------------------------------


class StartError(Exception):
    """The container could not be started (terminated with exit code 128, reason StartError)."""


class ImageError(Exception):
    """The image cannot be had (ErrImagePull / ImagePullBackOff)."""


class ContainerHandle(Protocol):
    container_id: str
    image_id: str

    def wait(self) -> tuple[int, bool]: ...  # (exit code, OOM killed)

    def signal(self, sig: int) -> None: ...

    def cleanup(self) -> None: ...


class Runtime(Protocol):
    name: str

    def base_env(self) -> dict[str, str]: ...

    def check_image(self, image: str) -> str: ...  # returns an image id or raises ImageError

    def start(
        self, pod: Obj, container: Obj, argv: list[str], env: dict[str, str], out: ContainerLog
    ) -> ContainerHandle: ...

    def close(self) -> None: ...


def _exit_code(returncode: int) -> int:
    # Container runtimes report death by signal n as 128+n.
    return 128 - returncode if returncode < 0 else returncode


class _MemoryCgroup:
    """A process pod's own cgroup-v1/v2 memory cgroup, with its limit if it has one, when the host lets us make one
    (best effort). Every pod gets one, as every container on a real node does: what the pod's processes use is
    then the pod's alone (its peak is what a child measures, kannon.measure), not the emulator's whole group's."""

    def __init__(self, limit: int | None, tag: str) -> None:
        self.path: Path | None = None
        self.v2 = False
        base = _cgroup_base()
        if base is None:
            return
        path, self.v2 = base[0] / f"kannon-emu-{tag}", base[1]
        try:
            path.mkdir()
            if limit is None:
                pass
            elif self.v2:
                (path / "memory.max").write_text(str(limit))
                (path / "memory.swap.max").write_text("0")
            else:
                (path / "memory.limit_in_bytes").write_text(str(limit))
                with contextlib.suppress(OSError):
                    (path / "memory.memsw.limit_in_bytes").write_text(str(limit))
            self.path = path
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()

    def add(self, pid: int) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                (self.path / "cgroup.procs").write_text(str(pid))

    def oom_killed(self) -> bool:
        if self.path is None:
            return False
        try:
            if self.v2:
                text = (self.path / "memory.events").read_text()
            else:
                text = (self.path / "memory.oom_control").read_text()
        except OSError:
            return False
        m = re.search(r"oom_kill (\d+)", text)
        return bool(m and int(m.group(1)) > 0)

    def remove(self) -> None:
        if self.path is not None:
            for _ in range(50):
                try:
                    self.path.rmdir()
                    return
                except OSError:
                    time.sleep(0.02)  # the kernel frees the cgroup only after its last task has gone


_CGROUP_BASE: tuple[Path, bool] | bool | None = False


def _cgroup_base() -> tuple[Path, bool] | None:
    """Our own memory cgroup directory, if writable. Looked up once."""
    global _CGROUP_BASE
    if _CGROUP_BASE is not False:
        return _CGROUP_BASE  # type: ignore[return-value]
    found: tuple[Path, bool] | None = None
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, rel = line.split(":", 2)
            if "memory" in controllers.split(","):
                cand = Path("/sys/fs/cgroup/memory") / rel.lstrip("/")
                if os.access(cand, os.W_OK) and (cand / "memory.limit_in_bytes").exists():
                    found = (cand, False)
            elif controllers == "" and found is None:
                cand = Path("/sys/fs/cgroup") / rel.lstrip("/")
                if os.access(cand, os.W_OK) and (cand / "memory.max").exists():
                    found = (cand, True)
    except OSError:
        found = None
    _CGROUP_BASE = found
    return found


class _ProcessHandle:
    def __init__(self, proc: subprocess.Popen[bytes], out: ContainerLog, cgroup: _MemoryCgroup | None) -> None:
        self.proc = proc
        self.container_id = f"emulator://{uuid.uuid4().hex}"
        self.image_id = ""
        self.cgroup = cgroup
        self._reader = threading.Thread(target=self._pump, args=(out,), daemon=True, name=f"log-{proc.pid}")
        self._reader.start()

    def _pump(self, out: ContainerLog) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            out.append(line)
        self.proc.stdout.close()

    def wait(self) -> tuple[int, bool]:
        code = self.proc.wait()
        # The pipe stays open while any grandchild holds it; don't let one stop the pod from finishing.
        self._reader.join(timeout=5)
        oom = self.cgroup.oom_killed() if self.cgroup else False
        return _exit_code(code), oom

    def signal(self, sig: int) -> None:
        # The whole process group: nothing the container started may outlive its pod.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def cleanup(self) -> None:
        self.signal(signal.SIGKILL)
        if self.cgroup:
            self.cgroup.remove()


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

    SCRIPT = str(Path(__file__).with_name("podzygote.py"))
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


# COMMAND as PID 1 of a new PID namespace: podzygote.py forks it and waits, ignoring SIGTERM itself (what
# `unshare --pid --fork` does). /proc is not remounted: it still shows the node's PIDs.
_PID1 = [sys.executable, "-I", "-S", str(Path(__file__).with_name("podzygote.py")), "--pid1"]


def pid_namespace_default() -> bool:
    return sys.platform.startswith("linux") and os.geteuid() == 0


def _check_executable(name: str, env: dict[str, str], cwd: str) -> None:
    if not os.path.isdir(cwd):
        raise StartError(f'chdir to cwd ("{cwd}") set in config.json failed: no such file or directory')
    found = os.path.join(cwd, name) if "/" in name else shutil.which(name, path=env.get("PATH", os.defpath))
    if found is None or not os.path.isfile(found):
        raise StartError(f'exec: "{name}": executable file not found in $PATH: unknown')
    if not os.access(found, os.X_OK):
        raise StartError(f'exec: "{name}": permission denied: unknown')


class ProcessRuntime:
    """Runs the pod's single container as a local process group: argv = command + args, never a shell.

    ``warm_imports``: modules (e.g. ``["gokart", "kannon.child"]``) a zygote per interpreter imports once; a
    container whose command is ``python -m/-c/SCRIPT ...`` is then forked from it instead of starting a fresh
    interpreter (see podzygote.py for what differs). Other commands, and interpreters whose zygote fails to start,
    run as fresh processes.

    ``pid_namespace`` (default: when running as root on Linux): each container's process is PID 1 of a PID
    namespace of its own, as in a real container, so it gets init's signal semantics: SIGTERM is dropped unless
    the process handles it, and the pod then runs until SIGKILL after the grace period.
    """

    name = "process"

    def __init__(
        self,
        workdir: str,
        image_env: dict[str, str] | None = None,
        memory_limits: bool = True,
        warm_imports: list[str] | None = None,
        pid_namespace: bool | None = None,
    ) -> None:
        self.workdir = workdir
        self.pid_namespace = pid_namespace_default() if pid_namespace is None else pid_namespace
        self.memory_limits = memory_limits
        self._image_env = image_env
        self.warm_imports = warm_imports
        self._zygotes: dict[str, _Zygote | None] = {}
        self._zygote_lock = threading.Lock()
        self._closed = False

    def base_env(self) -> dict[str, str]:
        # The "image's" environment. Nothing else of the emulator's own environment leaks into pods, like a real
        # container: what a child needs must be passed in the pod spec.
        if self._image_env is not None:
            return dict(self._image_env)
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
        }

    def check_image(self, image: str) -> str:
        return ""

    def start(
        self, pod: Obj, container: Obj, argv: list[str], env: dict[str, str], out: ContainerLog
    ) -> ContainerHandle:
        if not argv:
            raise StartError("no command specified")
        cwd = container.get("workingDir") or self.workdir
        limit = (container.get("resources") or {}).get("limits", {}).get("memory")
        cgroup = None
        if self.memory_limits:
            cgroup = _MemoryCgroup(int(parse_quantity(limit)) if limit is not None else None, uuid.uuid4().hex[:12])
        warm = warm_command(argv, env) if self.warm_imports is not None else None
        if warm is not None and os.path.isdir(cwd):
            handle = self._start_warm(warm, env, cwd, out, cgroup)
            if handle is not None:
                return handle
        run = argv
        if self.pid_namespace:
            _check_executable(argv[0], env, cwd)  # the wrapper's own exec failure would look like the container's
            run = _PID1 + argv
            if cgroup and cgroup.path:  # join before the wrapper forks PID 1, which then is charged from its start
                run = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(cgroup.path / "cgroup.procs"), *run]
        try:
            proc = subprocess.Popen(
                run,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            if cgroup:
                cgroup.remove()
            if not os.path.isdir(cwd):
                raise StartError(
                    f'chdir to cwd ("{cwd}") set in config.json failed: no such file or directory'
                ) from exc
            raise StartError(f'exec: "{argv[0]}": executable file not found in $PATH: unknown') from exc
        except OSError as exc:
            if cgroup:
                cgroup.remove()
            raise StartError(f'exec: "{argv[0]}": {exc.strerror}: unknown') from exc
        if cgroup:
            cgroup.add(proc.pid)
        return _ProcessHandle(proc, out, cgroup)

    def prewarm(self, exes: list[str]) -> threading.Thread:
        """Start the zygotes of these interpreters in the background (a node with the image already warm); join the
        returned thread to wait until they are ready."""

        def run() -> None:
            for exe in exes:
                self._zygote(exe)

        thread = threading.Thread(target=run, daemon=True, name="zygote-prewarm")
        thread.start()
        return thread

    def _zygote(self, exe: str) -> _Zygote | None:
        with self._zygote_lock:
            if self._closed:
                return None
            if exe in self._zygotes:
                z = self._zygotes[exe]
                if z is None or not z.dead:
                    return z
                z.close()
            try:
                z = _Zygote(exe, list(self.warm_imports or ()), self.base_env(), self.workdir)
            except (StartError, OSError) as exc:
                log.warning("process pods of %s start cold: %s", exe, exc)
                z = None
            else:
                if z.failed:
                    log.warning("warm pods of %s: modules not pre-imported: %s", exe, "; ".join(z.failed))
            self._zygotes[exe] = z
            return z

    def _start_warm(
        self, warm: tuple[str, str, str, list[str]], env: dict[str, str], cwd: str, out: ContainerLog,
        cgroup: _MemoryCgroup | None,
    ) -> _WarmHandle | None:  # fmt: skip
        exe, mode, target, args = warm
        zygote = self._zygote(exe)
        if zygote is None:
            return None
        read_fd, write_fd = os.pipe()
        procs = str(cgroup.path / "cgroup.procs") if cgroup and cgroup.path else None
        try:
            pid = zygote.start(mode, target, args, env, cwd, write_fd, procs, self.pid_namespace)
        except StartError as exc:
            os.close(read_fd)
            log.warning("%s; starting this container cold", exc)
            return None
        finally:
            os.close(write_fd)
        return _WarmHandle(zygote, pid, read_fd, out, cgroup)

    def close(self) -> None:
        with self._zygote_lock:
            self._closed = True
            zygotes = [z for z in self._zygotes.values() if z is not None]
            self._zygotes.clear()
        for z in zygotes:
            z.close()


class _DockerHandle:
    def __init__(self, container: Any, out: ContainerLog, image_id: str) -> None:
        self.container = container
        self.container_id = f"docker://{container.id}"
        self.image_id = image_id
        self._reader = threading.Thread(target=self._pump, args=(out,), daemon=True)
        self._reader.start()

    def _pump(self, out: ContainerLog) -> None:
        buf = b""
        try:
            for chunk in self.container.logs(stream=True, follow=True, stdout=True, stderr=True):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    out.append(line + b"\n")
        except Exception:  # the container vanished mid-stream; the exit state is read elsewhere
            log.debug("docker log stream ended", exc_info=True)
        if buf:
            out.append(buf)

    def wait(self) -> tuple[int, bool]:
        result = self.container.wait()
        self._reader.join(timeout=10)
        self.container.reload()
        state = self.container.attrs.get("State", {})
        return int(result.get("StatusCode", state.get("ExitCode", 1))), bool(state.get("OOMKilled"))

    def signal(self, sig: int) -> None:
        with contextlib.suppress(Exception):
            self.container.kill(signal=int(sig))

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.container.remove(force=True)


class DockerRuntime:
    """Runs the pod's container on the local Docker engine (docker SDK): image, env, limits, hostPath binds."""

    name = "docker"

    def __init__(self, image_override: str | None = None, client: Any = None) -> None:
        import docker  # lazily: only the docker runtime needs the SDK

        self.client = client or docker.from_env()
        self.client.ping()
        self.image_override = image_override
        self._errors = docker.errors

    def base_env(self) -> dict[str, str]:
        return {}  # the image brings its own ENV

    def check_image(self, image: str) -> str:
        img = self.image_override or image
        try:
            return str(self.client.images.get(img).id)
        except self._errors.ImageNotFound as exc:
            # No registry is reachable: a missing image can only fail to pull.
            raise ImageError(
                f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull and unpack image '
                f'"{img}": not present on the local engine and no registry is reachable'
            ) from exc

    def start(
        self, pod: Obj, container: Obj, argv: list[str], env: dict[str, str], out: ContainerLog
    ) -> ContainerHandle:
        image = self.image_override or container["image"]
        image_id = self.check_image(container["image"])
        limits = (container.get("resources") or {}).get("limits") or {}
        kwargs: dict[str, Any] = {}
        if "memory" in limits:
            mem = int(parse_quantity(limits["memory"]))
            kwargs["mem_limit"] = mem
            kwargs["memswap_limit"] = mem  # no swap, so exceeding the limit is a real OOM kill
        if "cpu" in limits:
            kwargs["nano_cpus"] = int(parse_quantity(limits["cpu"]) * Decimal(10**9))
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        binds: dict[str, dict[str, str]] = {}
        for m in container.get("volumeMounts") or []:
            vol = volumes.get(m["name"], {})
            if vol.get("hostPath"):
                binds[vol["hostPath"]["path"]] = {"bind": m["mountPath"], "mode": "ro" if m.get("readOnly") else "rw"}
        sc = {**(pod["spec"].get("securityContext") or {}), **(container.get("securityContext") or {})}
        if sc.get("runAsUser") is not None:
            kwargs["user"] = f"{sc['runAsUser']}:{sc.get('runAsGroup', sc['runAsUser'])}"
        command = [expand(a, env) for a in container.get("command") or []] or None
        args = [expand(a, env) for a in container.get("args") or []] or None
        try:
            ctr = self.client.containers.create(
                image,
                entrypoint=command,
                command=args,
                environment=env,
                working_dir=container.get("workingDir") or None,
                volumes=binds or None,
                network_mode="host",
                labels={
                    "kannon.io/emulator-pod": f"{pod['metadata']['namespace']}.{pod['metadata']['name']}",
                    "kannon.io/emulator-pid": str(os.getpid()),
                },
                detach=True,
                **kwargs,
            )
        except self._errors.APIError as exc:
            raise StartError(str(exc.explanation or exc)) from exc
        try:
            ctr.start()
        except self._errors.APIError as exc:
            with contextlib.suppress(Exception):
                ctr.remove(force=True)
            raise StartError(str(exc.explanation or exc)) from exc
        return _DockerHandle(ctr, out, image_id)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


# --- termination messages -----------------------------------------------------------------------------------------
# kubernetes.io/docs/tasks/debug/debug-application/determine-reason-pod-failure/: the kubelet makes a file per
# container instance, mounts it at terminationMessagePath, and after the exit puts what it holds (its last 4096
# bytes) in state.terminated.message; with FallbackToLogsOnError, an empty file and a non-zero exit, the log's last
# 80 lines / 2048 bytes instead.
TERMINATION_MESSAGE_MAX = 4096  # kubelet: MaxContainerTerminationMessageLength
FALLBACK_LOG_LINES, FALLBACK_LOG_BYTES = 80, 2048  # MaxContainerTerminationMessageLog{Lines,Length}


def termination_file(pod: Obj, env: dict[str, str], path: Path, runtime: str) -> tuple[Obj, dict[str, str], Path]:
    """Create the container instance's termination message file and put it at the container's
    terminationMessagePath: the Docker runtime bind-mounts it there (as the kubelet does); a process pod has no
    mount namespace, so an env value naming that path is pointed at the file instead (its stand-in for the mount)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    path.chmod(0o666)  # the container may run as another user (runAsUser)
    container = pod["spec"]["containers"][0]
    target = container.get("terminationMessagePath") or "/dev/termination-log"
    if runtime == "docker":
        pod = copy.deepcopy(pod)
        volume = {"name": "kannon-emu-termination", "hostPath": {"path": str(path)}}
        pod["spec"].setdefault("volumes", []).append(volume)
        pod["spec"]["containers"][0].setdefault("volumeMounts", []).append(
            {"name": volume["name"], "mountPath": target})
    else:
        env = {k: (str(path) if v == target else v) for k, v in env.items()}
    return pod, env, path


def termination_message(path: Path, container: Obj, code: int, out: ContainerLog) -> str | None:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - TERMINATION_MESSAGE_MAX))
            data = f.read(TERMINATION_MESSAGE_MAX)
    except OSError:
        data = b""
    if not data and code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
        with out.cond:
            lines = [line for _, line in out.lines[-FALLBACK_LOG_LINES:]]
        data = b"".join(lines)[-FALLBACK_LOG_BYTES:]
    return data.decode("utf-8", errors="replace") or None


# --- kubelet ------------------------------------------------------------------------------------------------------


def qos_class(spec: Obj) -> str:
    # kubernetes.io/docs/concepts/workloads/pods/pod-qos/
    containers = spec.get("containers") or []
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or str(req.get(r, lim.get(r))) != str(lim[r]):
                guaranteed = False
    if guaranteed and containers:
        return "Guaranteed"
    return "Burstable" if any_set else "BestEffort"


class Node:
    """The single emulated node: labels for nodeSelector, allocatable for the scheduler's fit check."""

    def __init__(self, labels: dict[str, str] | None = None, allocatable: dict[str, str] | None = None) -> None:
        self.labels = {
            "kubernetes.io/hostname": NODE_NAME,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            **(labels or {}),
        }
        self.allocatable = {"cpu": "64", "memory": "256Gi", "pods": "110", **(allocatable or {})}

    def unschedulable_reason(self, spec: Obj) -> str | None:
        """The scheduler's FailedScheduling message for a pod that cannot fit, or None."""
        selector = spec.get("nodeSelector") or {}
        if any(self.labels.get(k) != v for k, v in selector.items()):
            return (
                "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 "
                "nodes are available: 1 Preemption is not helpful for scheduling."
            )
        totals: dict[str, Decimal] = {}
        for c in spec.get("containers") or []:
            for r, q in ((c.get("resources") or {}).get("requests") or {}).items():
                totals[r] = totals.get(r, Decimal(0)) + parse_quantity(q)
        short = [r for r, q in sorted(totals.items()) if q > parse_quantity(self.allocatable.get(r, "0"))]
        if short:
            parts = ", ".join(f"1 Insufficient {r}" for r in short)
            return (
                f"0/1 nodes are available: {parts}. preemption: 0/1 nodes are available: 1 No preemption victims "
                "found for incoming pod."
            )
        return None


class PodWorker:
    """Drives one pod through its lifecycle on its own thread."""

    def __init__(self, kubelet: Kubelet, namespace: str, name: str, uid: str) -> None:
        self.kubelet = kubelet
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.wake = threading.Event()
        self.kill_requested = False
        self.grace = 30.0
        self.exited = threading.Event()
        self.finished = False
        self.handle: ContainerHandle | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"pod-{namespace}-{name}")

    # Called under the store lock: only flag and wake.
    def request_kill(self, grace: float) -> None:
        self.grace = min(self.grace, grace) if self.kill_requested else grace
        self.kill_requested = True
        self.wake.set()

    @property
    def store(self) -> Store:
        return self.kubelet.store

    def _update(self, fn: Callable[[Obj], None]) -> Obj | None:
        def apply(pod: Obj) -> Obj | None:
            if pod["metadata"].get("uid") != self.uid:
                return None
            fn(pod)
            return pod

        return self.store.mutate("pods", self.namespace, self.name, apply)

    def _remove_if_deleting(self) -> None:
        with self.store.cond:
            pod = self.store.get("pods", self.namespace, self.name)
            if pod is not None and pod["metadata"].get("uid") == self.uid and pod["metadata"].get("deletionTimestamp"):
                self.store.remove("pods", self.namespace, self.name)

    def _wait_for_kill(self) -> None:
        while not self.kill_requested and not self.kubelet.stopping:
            self.wake.wait()
            self.wake.clear()

    def _run(self) -> None:
        try:
            self._lifecycle()
        except Exception:
            log.exception("pod worker %s/%s crashed", self.namespace, self.name)
        finally:
            self.finished = True
            shutil.rmtree(Path(self.kubelet.secret_dir) / self.uid, ignore_errors=True)
            self._remove_if_deleting()
            self.kubelet.forget(self.uid)

    def _lifecycle(self) -> None:
        pod = self.store.get("pods", self.namespace, self.name)
        if pod is None:
            return
        job_name = (pod["metadata"].get("labels") or {}).get(JOB_NAME_LABEL)
        behaviour = self.kubelet.faults.take_pod_behaviour(job_name, self.name)
        container = pod["spec"]["containers"][0]
        cname = container["name"]

        # Scheduler (kubernetes.io/docs/concepts/scheduling-eviction/kube-scheduler/).
        reason = self.kubelet.node.unschedulable_reason(pod["spec"])
        if behaviour == "Unschedulable" and reason is None:
            reason = (
                "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
                "1 No preemption victims found for incoming pod."
            )
        if reason is not None:
            self._update(lambda p: set_condition(p["status"], _cond("PodScheduled", "False", "Unschedulable", reason)))
            self._wait_for_kill()  # A pod that cannot be scheduled stays Pending forever.
            return

        def bind(p: Obj) -> None:
            p["spec"]["nodeName"] = NODE_NAME
            set_condition(p["status"], _cond("PodScheduled", "True"))

        pod = self._update(bind) or pod

        def creating(p: Obj) -> None:
            st = p["status"]
            st.update({"hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}], "startTime": now_iso()})
            set_condition(st, _cond("PodReadyToStartContainers", "True"))
            set_condition(st, _cond("Initialized", "True"))
            set_condition(
                st, _cond("Ready", "False", "ContainersNotReady", f"containers with unready status: [{cname}]")
            )
            set_condition(
                st,
                _cond("ContainersReady", "False", "ContainersNotReady", f"containers with unready status: [{cname}]"),
            )
            st["containerStatuses"] = [self._status(container, {"waiting": {"reason": "ContainerCreating"}})]

        self._update(creating)
        if self.kill_requested:
            return

        runtime = self.kubelet.runtime
        restarts = 0
        while True:
            waiting: tuple[str, str] | None = None
            retry = False
            image_id = ""
            env: dict[str, str] = {}
            if behaviour in ("ErrImagePull", "ImagePullBackOff"):
                waiting = ("ErrImagePull", f'Failed to pull image "{container["image"]}": injected by kannon emulator')
            elif behaviour == "CreateContainerConfigError":
                waiting = ("CreateContainerConfigError", 'secret "kannon-emulator-missing" not found')
            else:
                run_pod = pod
                try:
                    run_pod = self._mount_secret_volumes(pod)
                except secrets.SecretMissing as exc:  # volume setup: the container is not even being created
                    self._warning_event("FailedMount", str(exc))
                    waiting, retry = ("ContainerCreating", ""), True
                try:
                    image_id = runtime.check_image(container["image"]) if waiting is None else ""
                    env = container_env(pod, container, runtime.base_env(), self.store) if waiting is None else {}
                except ImageError as exc:
                    waiting = ("ErrImagePull", str(exc))
                    behaviour = "ImagePullBackOff"
                except ConfigError as exc:
                    waiting = ("CreateContainerConfigError", str(exc))
                    retry = True
            if waiting is not None:
                self._set_waiting(container, restarts, *waiting)
                if retry:  # the kubelet retries at each sync: a Secret created later lets the container start
                    self.wake.wait()
                    self.wake.clear()
                    if self.kill_requested or self.kubelet.stopping:
                        return
                    continue
                if behaviour == "ImagePullBackOff":
                    # The kubelet's image back-off: ErrImagePull first, then ImagePullBackOff.
                    self.wake.wait(0.2)
                    self._set_waiting(
                        container, restarts, "ImagePullBackOff", f'Back-off pulling image "{container["image"]}"'
                    )
                self._wait_for_kill()  # Never starts, never fails: the Job does not fail by itself.
                return
            out = self.kubelet.new_log(self.uid, cname)
            argv = [expand(a, env) for a in (container.get("command") or []) + (container.get("args") or [])]
            term_dir = Path(self.kubelet.secret_dir) / self.uid / "termination"
            run_pod, env, term_file = termination_file(run_pod, env, term_dir / f"{cname}-{restarts}", runtime.name)
            try:
                handle = runtime.start(run_pod, run_pod["spec"]["containers"][0], argv, env, out)
            except StartError as exc:
                out.finish()
                self._terminate(container, restarts, 128, "StartError", str(exc), None, "")
                if not self._maybe_restart(pod):
                    return
                restarts += 1
                continue
            self.handle = handle
            started = now_iso()
            waiter = threading.Thread(target=self._await_exit, args=(handle,), daemon=True)
            result: list[tuple[int, bool]] = []
            self._result = result
            waiter.start()

            def running(
                p: Obj,
                image_id: str = image_id or handle.image_id,
                cid: str = handle.container_id,
                started: str = started,
                restarts: int = restarts,
            ) -> None:
                st = p["status"]
                st["phase"] = "Running"
                st["podIP"], st["podIPs"] = "127.0.0.1", [{"ip": "127.0.0.1"}]
                set_condition(st, _cond("Ready", "True"))
                set_condition(st, _cond("ContainersReady", "True"))
                cs = self._status(container, {"running": {"startedAt": started}}, restarts, prev=st)
                cs.update({"ready": True, "started": True, "containerID": cid, "imageID": image_id})
                st["containerStatuses"] = [cs]

            self._update(running)
            disruption = None
            if behaviour in ("OOMKilled", "Evicted", "Preempted"):
                disruption = behaviour
                behaviour = None
                self._disrupt(disruption, handle)
            # Wait for exit, or for a deletion to ask us to stop it.
            while not self.exited.is_set():
                self.wake.wait()
                self.wake.clear()
                if (self.kill_requested or self.kubelet.stopping) and not self.exited.is_set():
                    self._stop_container(handle)
            waiter.join()
            code, oom = result[0] if result else (137, False)
            out.finish()
            handle.cleanup()
            reason = "OOMKilled" if oom or disruption == "OOMKilled" else ("Completed" if code == 0 else "Error")
            if disruption == "OOMKilled":
                code = 137
            message = termination_message(term_file, container, code, out)
            self._terminate(container, restarts, code, reason, message, disruption, handle.container_id, started)
            if code == 0 or not self._maybe_restart(pod):
                return
            restarts += 1
            self.exited.clear()

    def _await_exit(self, handle: ContainerHandle) -> None:
        try:
            self._result.append(handle.wait())
        finally:
            self.exited.set()
            self.wake.set()

    def _stop_container(self, handle: ContainerHandle) -> None:
        # Graceful termination: SIGTERM, then SIGKILL after the grace period (pod-lifecycle "Termination of Pods").
        grace = 0.0 if self.kubelet.stopping else self.grace
        if grace > 0:
            handle.signal(signal.SIGTERM)
            if self.exited.wait(grace):
                return
        handle.signal(signal.SIGKILL)
        self.exited.wait(10)

    def _disrupt(self, kind: str, handle: ContainerHandle) -> None:
        if kind == "OOMKilled":
            handle.signal(signal.SIGKILL)
            return
        if kind == "Evicted":
            msg = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. "
            self._evict_message = msg
            # Node-pressure eviction: the kubelet marks the pod with DisruptionTarget (TerminationByKubelet) and
            # kills it; the pod ends Failed with status.reason Evicted.
            self._update(
                lambda p: set_condition(p["status"], _cond("DisruptionTarget", "True", "TerminationByKubelet", msg))
            )
            handle.signal(signal.SIGKILL)
            return
        # Preemption: the scheduler adds DisruptionTarget (PreemptionByScheduler) and deletes the pod gracefully.
        msg = f"{NODE_NAME}: preempting to accommodate a higher priority pod"

        def preempt(p: Obj) -> None:
            set_condition(p["status"], _cond("DisruptionTarget", "True", "PreemptionByScheduler", msg))
            p["metadata"]["deletionTimestamp"] = now_iso()
            p["metadata"]["deletionGracePeriodSeconds"] = 0

        self._update(preempt)
        handle.signal(signal.SIGKILL)

    def _maybe_restart(self, pod: Obj) -> bool:
        if pod["spec"].get("restartPolicy") != "OnFailure" or self.kill_requested or self.kubelet.stopping:
            return False
        cur = self.store.get("pods", self.namespace, self.name)
        return cur is not None and not cur["metadata"].get("deletionTimestamp")

    def _status(
        self, container: Obj, state: dict[str, Any], restarts: int = 0, prev: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        cs: dict[str, Any] = {
            "name": container["name"],
            "image": container["image"],
            "imageID": "",
            "ready": False,
            "restartCount": restarts,
            "started": False,
            "state": state,
            "lastState": {},
        }
        if prev and prev.get("containerStatuses"):
            last = prev["containerStatuses"][0]
            if "terminated" in last.get("state", {}):
                cs["lastState"] = {"terminated": last["state"]["terminated"]}
            else:
                cs["lastState"] = last.get("lastState", {})
        return cs

    def _warning_event(self, reason: str, message: str) -> None:
        """A core/v1 Event about this pod from the kubelet (``kubectl describe pod`` shows it), counted up on repeat."""
        name = f"{self.name}.{reason.lower()}"
        stamp = now_iso()

        def bump(ev: Obj) -> Obj:
            ev.update(count=int(ev.get("count", 1)) + 1, lastTimestamp=stamp, message=message)
            return ev

        with self.store.cond:
            if self.store.mutate("events", self.namespace, name, bump) is None:
                self.store.create("events", {
                    "apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": self.namespace},
                    "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": self.name,
                                       "namespace": self.namespace, "uid": self.uid},
                    "reason": reason, "message": message, "type": "Warning", "count": 1,
                    "source": {"component": "kubelet", "host": NODE_NAME}, "firstTimestamp": stamp,
                    "lastTimestamp": stamp, "reportingComponent": "kubelet", "reportingInstance": NODE_NAME,
                })  # fmt: skip

    def _mount_secret_volumes(self, pod: Obj) -> Obj:
        """The pod as the runtime sees it: each ``secret`` and ``configMap`` volume written to a private directory
        (files named by key, kubernetes.io/docs/concepts/configuration/secret/#using-secrets-as-files-from-a-pod,
        kubernetes.io/docs/concepts/storage/volumes/#configmap; kannon.testing.kube.configmaps) and turned into a
        read-only hostPath the Docker runtime binds at the mount path (the process runtime mounts nothing)."""
        vols = pod["spec"].get("volumes") or []
        if not any(v.get("secret") or v.get("configMap") for v in vols):
            return pod
        out = copy.deepcopy(pod)
        base = Path(self.kubelet.secret_dir) / self.uid
        for vol in out["spec"]["volumes"]:
            if not (vol.get("secret") or vol.get("configMap")):
                continue
            files: dict[str, tuple[str | bytes, int]] = dict(
                (secrets.volume_files(self.store, self.namespace, vol) if vol.get("secret")
                 else configmaps.volume_files(self.store, self.namespace, vol)) or {})  # fmt: skip
            target = base / vol["name"]
            target.mkdir(parents=True, exist_ok=True, mode=0o700)
            for rel, (content, mode) in files.items():
                path = target / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content if isinstance(content, bytes) else content.encode())
                path.chmod(mode)
            vol.pop("secret", None)
            vol.pop("configMap", None)
            vol["hostPath"] = {"path": str(target)}
        for c in out["spec"]["containers"]:
            for m in c.get("volumeMounts") or []:
                if any(v["name"] == m["name"] and str(v["hostPath"]["path"]).startswith(str(base))
                       for v in out["spec"]["volumes"] if v.get("hostPath")):  # fmt: skip
                    m["readOnly"] = True  # secret and configMap volumes are always mounted read-only
        return out

    def _set_waiting(self, container: Obj, restarts: int, reason: str, message: str) -> None:
        def apply(p: Obj) -> None:
            st = p["status"]
            state = {"reason": reason, "message": message} if message else {"reason": reason}
            cs = self._status(container, {"waiting": state}, restarts, prev=st)
            st["containerStatuses"] = [cs]

        self._update(apply)

    def _terminate(
        self,
        container: Obj,
        restarts: int,
        code: int,
        reason: str,
        message: str | None,
        disruption: str | None,
        cid: str,
        started: str | None = None,
    ) -> None:
        finished = now_iso()
        restart_policy = None

        def apply(p: Obj) -> None:
            nonlocal restart_policy
            restart_policy = p["spec"].get("restartPolicy")
            st = p["status"]
            term: dict[str, Any] = {
                "exitCode": code,
                "reason": reason,
                "startedAt": started or finished,
                "finishedAt": finished,
            }
            if message:
                term["message"] = message
            if cid:
                term["containerID"] = cid
            cs = self._status(container, {"terminated": term}, restarts, prev=None)
            prev_cs = (st.get("containerStatuses") or [{}])[0]
            cs["lastState"] = prev_cs.get("lastState", {})
            cs["imageID"] = prev_cs.get("imageID", "")
            cs["containerID"] = cid or None
            if not cid:
                cs.pop("containerID")
            will_restart = (
                code != 0
                and restart_policy == "OnFailure"
                and not p["metadata"].get("deletionTimestamp")
                and not self.kill_requested
            )
            if will_restart:
                # CrashLoopBackOff: the pod stays Running and the kubelet restarts the container in place.
                cs["state"] = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off 10s restarting failed container={container['name']}",
                    }
                }
                cs["lastState"] = {"terminated": term}
                st["containerStatuses"] = [cs]
                set_condition(
                    st,
                    _cond(
                        "Ready", "False", "ContainersNotReady", f"containers with unready status: [{container['name']}]"
                    ),
                )
                set_condition(
                    st,
                    _cond(
                        "ContainersReady",
                        "False",
                        "ContainersNotReady",
                        f"containers with unready status: [{container['name']}]",
                    ),
                )
                return
            st["containerStatuses"] = [cs]
            st["phase"] = "Succeeded" if code == 0 else "Failed"
            done = "PodCompleted" if code == 0 else "PodFailed"
            set_condition(st, _cond("Ready", "False", done))
            set_condition(st, _cond("ContainersReady", "False", done))
            set_condition(st, _cond("PodReadyToStartContainers", "False"))
            if disruption == "Evicted":
                st["reason"] = "Evicted"
                st["message"] = getattr(self, "_evict_message", "evicted")
                st["phase"] = "Failed"

        self._update(apply)


class Kubelet:
    """Starts a worker per pod (on pod ADDED) and serves container logs."""

    def __init__(self, store: Store, runtime: Runtime, faults: Faults, node: Node) -> None:
        self.store = store
        self.runtime = runtime
        self.faults = faults
        self.node = node
        self.stopping = False
        self._workers: dict[str, PodWorker] = {}
        self._logs: dict[str, dict[str, list[ContainerLog]]] = {}
        self._lock = threading.Lock()
        self.secret_dir = tempfile.mkdtemp(prefix="kannon-emu-secrets-")  # 0700: secret volumes of running pods
        store.add_listener(self._on_change)

    def _on_change(self, ch: Change) -> None:
        if ch.resource in (secrets.RESOURCE, configmaps.RESOURCE):  # pods waiting for one of them look again
            with self._lock:
                waiting = [p for p in self._workers.values() if p.namespace == ch.obj["metadata"].get("namespace")]
            for p in waiting:
                p.wake.set()
            return
        if ch.resource != "pods":
            return
        meta = ch.obj["metadata"]
        uid = meta["uid"]
        if ch.type == "ADDED" and not self.stopping:
            worker = PodWorker(self, meta["namespace"], meta["name"], uid)
            with self._lock:
                self._workers[uid] = worker
            worker.thread.start()
        elif ch.type == "DELETED":
            with self._lock:
                w = self._workers.get(uid)
                self._logs.pop(uid, None)
            if w is not None:
                w.request_kill(0)
        elif (
            ch.type == "MODIFIED"
            and meta.get("deletionTimestamp")
            and ch.old is not None
            and not ch.old["metadata"].get("deletionTimestamp")
        ):
            with self._lock:
                w = self._workers.get(uid)
            if w is not None:
                w.request_kill(float(meta.get("deletionGracePeriodSeconds", 30)))

    def forget(self, uid: str) -> None:
        with self._lock:
            self._workers.pop(uid, None)

    def worker(self, uid: str) -> PodWorker | None:
        with self._lock:
            return self._workers.get(uid)

    def new_log(self, uid: str, container: str) -> ContainerLog:
        out = ContainerLog()
        with self._lock:
            self._logs.setdefault(uid, {}).setdefault(container, []).append(out)
        return out

    def delete_pod(
        self, namespace: str, name: str, grace: int | None, preconditions: dict[str, Any] | None = None
    ) -> Obj:
        """API deletion of a pod: graceful when its container may be running, immediate otherwise."""
        with self.store.cond:
            pod = self.store.require("pods", namespace, name)
            meta = pod["metadata"]
            if preconditions and preconditions.get("uid") not in (None, meta["uid"]):
                raise ApiError(
                    409,
                    "Conflict",
                    f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                    f"UID in object meta: {meta['uid']}",
                )
            if grace is None:
                grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30))
            w = self._workers.get(meta["uid"])
            running = w is not None and not w.finished and pod["spec"].get("nodeName") and not is_terminal(pod)
            if not running or grace == 0:
                final = self.store.remove("pods", namespace, name)
                assert final is not None
                if w is not None:
                    w.request_kill(0)
                return final
            if meta.get("deletionTimestamp"):
                return pod

            def mark(p: Obj) -> Obj:
                p["metadata"]["deletionTimestamp"] = datetime.fromtimestamp(time.time() + grace, timezone.utc).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
                p["metadata"]["deletionGracePeriodSeconds"] = grace
                return p

            out = self.store.mutate("pods", namespace, name, mark)
            assert out is not None
            return out

    def container_log(self, pod: Obj, container: str | None, previous: bool) -> ContainerLog | None:
        """The log to serve, None for "empty" (pod not yet on a node), or ApiError as the kubelet answers."""
        meta = pod["metadata"]
        names = [c["name"] for c in pod["spec"]["containers"]]
        if container is None:
            if len(names) != 1:
                raise bad_request(f"a container name must be specified for pod {meta['name']}, choose one of: {names}")
            container = names[0]
        if container not in names:
            raise bad_request(f"container {container} is not valid for pod {meta['name']}")
        if not pod["spec"].get("nodeName"):
            return None
        with self._lock:
            logs = list(self._logs.get(meta["uid"], {}).get(container, []))
        statuses = {cs["name"]: cs for cs in pod.get("status", {}).get("containerStatuses") or []}
        cs = statuses.get(container, {})
        waiting = cs.get("state", {}).get("waiting")
        if previous:
            # While the container waits to restart, its last instance is the "previous" one; while it runs, the one
            # before it.
            idx = -1 if waiting else -2
            if len(logs) < -idx:
                raise bad_request(f'previous terminated container "{container}" in pod "{meta["name"]}" not found')
            return logs[idx]
        if not logs:
            reason = (waiting or {}).get("reason", "ContainerCreating")
            if reason in ("ErrImagePull", "ImagePullBackOff"):
                reason = "trying and failing to pull image"
            raise bad_request(f'container "{container}" in pod "{meta["name"]}" is waiting to start: {reason}')
        return logs[-1]

    def shutdown(self) -> None:
        self.stopping = True
        with self._lock:
            workers = list(self._workers.values())
        for w in workers:
            w.request_kill(0)
        deadline = time.monotonic() + 15
        for w in workers:
            w.thread.join(max(0.1, deadline - time.monotonic()))
        for w in workers:
            if w.handle is not None:
                w.handle.cleanup()
        self.runtime.close()
        shutil.rmtree(self.secret_dir, ignore_errors=True)


def default_workdir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="kannon-emu-workdir-")


def remove_workdir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
