"""The process runtime: each container a local process group (PID 1 of its own PID namespace where allowed),
cold or forked warm from a zygote (warm.py)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid

from kannon.forkserver.client import SCRIPT as forkserver_script
from kannon.testing.kube.node.cgroups import _cgroup_base, _MemoryCgroup
from kannon.testing.kube.node.logs import ContainerLog
from kannon.testing.kube.node.runtime import ContainerHandle, StartError, _exit_code
from kannon.testing.kube.node.warm import SPARES, _WarmHandle, _Zygote, warm_command
from kannon.testing.kube.store import Obj
from kannon.testing.kube.validation import parse_quantity

log = logging.getLogger("kannon.testing.kube")


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


# COMMAND as PID 1 of a new PID namespace: the fork server's --pid1 forks it and waits, ignoring SIGTERM itself
# (what `unshare --pid --fork` does). /proc is not remounted: it still shows the node's PIDs.
_PID1 = [sys.executable, "-I", "-S", forkserver_script, "--pid1"]


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

    ``warm_imports``: modules (e.g. ``["gokart", "kannon.childwarm:warm_up"]``; ``MOD:FUNC`` also calls FUNC once)
    a zygote per interpreter imports once; a container whose command is ``python -m/-c/SCRIPT ...`` is then forked
    from it instead of starting a fresh interpreter (see kannon.forkserver for what differs). Other commands, and
    interpreters whose zygote fails to start, run as fresh processes.

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
        warm = warm_command(argv, env) if self.warm_imports is not None else None
        warm = warm if warm is not None and os.path.isdir(cwd) else None
        cgroup = None
        if self.memory_limits:  # a warm process makes its own (cheaper: see _MemoryCgroup)
            cgroup = _MemoryCgroup(int(parse_quantity(limit)) if limit is not None else None, uuid.uuid4().hex[:12],
                                   make=warm is None)  # fmt: skip
        if warm is not None:
            handle = self._start_warm(warm, env, cwd, out, cgroup)
            if handle is not None:
                return handle
            if cgroup is not None:
                cgroup.make()
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
                spares = SPARES if self.pid_namespace else 0
                base = _cgroup_base() if self.memory_limits else None
                z = _Zygote(exe, list(self.warm_imports or ()), self.base_env(), self.workdir, spares,
                            str(base[0]) if base else None)  # fmt: skip
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
        try:
            pid = zygote.start(mode, target, args, env, cwd, write_fd, cgroup.spec() if cgroup else None,
                               self.pid_namespace)  # fmt: skip
        except StartError as exc:
            os.close(read_fd)
            log.warning("%s; starting this container cold", exc)
            return None
        finally:
            os.close(write_fd)
        if cgroup is not None:
            cgroup.made()
        return _WarmHandle(zygote, pid, read_fd, out, cgroup)

    def close(self) -> None:
        with self._zygote_lock:
            self._closed = True
            zygotes = [z for z in self._zygotes.values() if z is not None]
            self._zygotes.clear()
        for z in zygotes:
            z.close()


def default_workdir() -> str:

    return tempfile.mkdtemp(prefix="kannon-emu-workdir-")


def remove_workdir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
