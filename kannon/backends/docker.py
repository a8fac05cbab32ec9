"""The Docker backend: one container per bullet on a Docker engine, through the ``docker`` SDK.

Each attempt runs the same child entrypoint as every backend (``launch.argv(executor.python)``) in its own
container, with the master's working directory and the run's hand-off directory bind-mounted at the same paths,
the master's uid:gid, the per-task resource hints as cgroup limits, and labels that identify run, task and attempt.

Status is event-driven with one thread per container (see :meth:`DockerExecutor._run`): the thread creates and
starts the container, streams its output into ``launch.log_path`` until the engine closes the stream (the container
ended), reads the exit state, removes the container and reports ``Finished``. No polling.

After a master is killed (SIGKILL: no cleanup ran), a rerun of the same pipeline has the same run id and finds the
old containers by label in :meth:`DockerExecutor.start`: finished ones are removed; a still-running one is
*adopted* when the new run launches the same task id with the same command and limits (its log is streamed from
the beginning into the new attempt's log). Running containers that are not claimed are stopped and removed when the
run ends (``close``/``cancel_all``).

The module imports nothing heavy: the ``docker`` SDK is imported when an executor first talks to the engine.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kannon import childresult, exitcodes, logtail, measure, secretfile
from kannon.backends.base import (
    BackendError,
    Executor,
    Finished,
    Launch,
    LogLine,
    Report,
    RunInfo,
    SpecTransport,
    Started,
    tail_lines,
)
from kannon.hints import Hints
from kannon.hookspecs import hookimpl
from kannon.plugins import BackendSpec

LABEL_RUN = "kannon.io/run-id"
LABEL_TASK = "kannon.io/task-id"
LABEL_ATTEMPT = "kannon.io/attempt"
LABEL_FAMILY = "kannon.io/family"
LABEL_CONFIG = "kannon.io/config-hash"  # adoption only reuses a container started with the same command and limits
LABEL_MANAGED = "kannon.io/managed-by"

#: the engine refuses smaller memory limits (moby's linuxMinMemory)
MIN_MEMORY = 6 * 1024 * 1024
#: the engine's smallest cpu quota (it rejects NanoCpus below 0.01 cpus)
MIN_CPUS = 0.01
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
MAX_LINE = 64 * 1024  # longest live log line passed on whole

log = logging.getLogger("kannon.docker")

#: import probe results: (image id, modules, sys.path) -> {module: error}; an image id names fixed contents
_PROBED: dict[tuple[str, tuple[str, ...], tuple[str, ...]], dict[str, str]] = {}

# What to check in a container setup when the child exits with one of its own codes (kannon/exitcodes.py).
DOCKER_HINTS = {
    exitcodes.BAD_SPEC: "is the run directory mounted into the container at the same path?",
    exitcodes.ID_MISMATCH: "is the code in the image the same version as the master's?",
    exitcodes.UPSTREAM_MISSING: "is the workspace mounted into the container, or on storage both can reach?",
    exitcodes.OUTPUT_MISSING: "is the workspace a bind mount the master sees at the same path?",
    exitcodes.IMPORT_FAILED: "is the pipeline's code installed in the image, or mounted (--volume)?",
}


# -- configuration: pure functions, unit-tested without an engine ----------------------------------------------------
@dataclass(frozen=True)
class Bind:
    """One bind mount: ``host`` path on the engine's machine, ``container`` path, read-only or not."""

    host: str
    container: str
    read_only: bool = False

    def spec(self) -> str:
        return f"{self.host}:{self.container}:{'ro' if self.read_only else 'rw'}"


def parse_volume(spec: str) -> Bind:
    """``HOST:CTR[:ro|rw]`` (or just ``PATH`` for the same path on both sides) into a :class:`Bind`."""
    parts = spec.split(":")
    mode = "rw"
    if len(parts) == 3 or (len(parts) == 2 and parts[1] in ("ro", "rw")):
        mode = parts.pop()
    if mode not in ("ro", "rw") or len(parts) > 2 or not all(parts):
        raise ValueError(f"volume {spec!r} is not HOST:CONTAINER[:ro|rw]")
    host = os.path.abspath(os.path.expanduser(parts[0]))
    container = parts[1] if len(parts) == 2 else host
    if not container.startswith("/"):
        raise ValueError(f"volume {spec!r}: the container path must be absolute")
    return Bind(host, os.path.normpath(container), mode == "ro")


def parse_env(items: Iterable[str], inherit: Mapping[str, str] | None = None) -> dict[str, str]:
    """``K=V`` items into a dict; a bare ``K`` takes the value from ``inherit`` (like ``docker run -e K``)."""
    source = os.environ if inherit is None else inherit
    env: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", name):
            raise ValueError(f"environment entry {item!r} is not NAME=VALUE")
        if not sep:
            if name not in source:
                raise ValueError(f"environment entry {name!r} has no value and {name} is not set in this environment")
            value = source[name]
        env[name] = value
    return env


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def plan_binds(volumes: Sequence[Bind], defaults: Sequence[str]) -> list[Bind]:
    """The user's volumes, then each default path mounted at the same path unless already covered.

    A default path is covered by a same-path bind of itself or a parent (mounting it again would shadow the
    parent's mode); a user volume at the same container path wins (the engine refuses duplicate mount points).
    """
    binds = list(volumes)
    for raw in defaults:
        path = os.path.normpath(os.path.abspath(raw))
        if path == "/":
            continue  # never bind the whole filesystem over the image's
        if any(b.container == path for b in binds):
            continue
        if any(b.host == b.container and _under(path, b.container) for b in binds):
            continue
        binds.append(Bind(path, path))
    return binds


def container_name(run_id: str, task_id: str, attempt: int) -> str:
    """Deterministic and readable; the engine allows ``[a-zA-Z0-9][a-zA-Z0-9_.-]*``."""
    safe_run = re.sub(r"[^a-zA-Z0-9_.-]", "-", run_id)[:24]
    safe_task = re.sub(r"[^a-zA-Z0-9_.-]", "-", task_id)[:64]
    return f"kannon-{safe_run}-{safe_task}-a{attempt}"


def resource_kwargs(hints: Hints) -> dict[str, Any]:
    """Docker SDK ``create`` arguments for the resource hints."""
    kwargs: dict[str, Any] = {}
    cores = hints.cpu_cores
    if cores is not None:
        kwargs["nano_cpus"] = round(cores * 1e9)
    memory = hints.memory_bytes
    if memory is not None:
        # memory + swap equal to the limit: no swap, so a task over its limit is really OOM-killed
        kwargs["mem_limit"] = memory
        kwargs["memswap_limit"] = memory
    if hints.gpu:
        kwargs["device_requests"] = [{"count": hints.gpu, "capabilities": [["gpu"]]}]
    return kwargs


def hint_problems(hints: Hints, engine: Mapping[str, Any]) -> list[str]:
    """What an engine (its ``docker info``) cannot honour in ``hints``; each a sentence saying what to change.

    ``node_selector`` and ``tolerations`` place work on a cluster's nodes; one engine is one machine, so they are
    accepted and ignored (a pipeline written for Kubernetes still runs here).
    """
    problems: list[str] = []
    ncpu = int(engine.get("NCPU") or 0)
    cores = hints.cpu_cores
    if cores is not None and ncpu and cores > ncpu:
        problems.append(f"cpu {hints.cpu!r} is more than the {ncpu} CPU(s) of the Docker engine; lower `cpu`")
    if cores is not None and cores < MIN_CPUS:
        problems.append(f"cpu {hints.cpu!r} is below Docker's minimum of 10m (0.01 cpus); raise `cpu`")
    memory = hints.memory_bytes
    if memory is not None and memory < MIN_MEMORY:
        problems.append(f"memory {hints.memory!r} is below Docker's minimum of 6Mi; raise `memory`")
    if hints.gpu:
        runtimes = engine.get("Runtimes") or {}
        if "nvidia" not in runtimes:
            problems.append(
                f"gpu={hints.gpu} needs the NVIDIA runtime in the Docker engine, which has only "
                f"{', '.join(sorted(runtimes)) or 'no'} runtime(s); install nvidia-container-toolkit and run "
                "`nvidia-ctk runtime configure --runtime=docker`, or remove `gpu` from the hints"
            )
    return problems


def config_hash(config: Mapping[str, Any]) -> str:
    """Identity of what a container runs (command, image, limits, mounts), without the environment (may hold
    secrets, and may legitimately change between masters)."""
    keys = ("image", "command", "user", "working_dir", "volumes", "nano_cpus", "mem_limit", "device_requests")
    material = {k: config.get(k) for k in keys}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:16]


def classify(
    launch: Launch,
    state: Mapping[str, Any],
    *,
    cancelled: bool,
    where: str,
    log_tail: tuple[str, ...],
    command: str = "python",
) -> Finished:
    """The Finished event for a container's final ``State`` (from inspect); ``command`` is argv[0]."""
    code = state.get("ExitCode")
    exit_code = int(code) if code is not None else None

    def done(reason: str | None = None, failure_class: str | None = None) -> Finished:
        return Finished(launch.key, exit_code, reason, failure_class, log_tail=log_tail, where=where)

    if cancelled:
        return done("cancelled: the container was stopped", "Cancelled")
    if state.get("OOMKilled"):
        limit = launch.hints.memory
        if limit is not None:
            return done(
                f"out of memory: the container was killed at its memory limit of {limit} (exit {exit_code}); "
                "raise `memory` in the task's hints",
                "OOMKilled",
            )
        return done(
            f"out of memory: the kernel killed the container (exit {exit_code}) with no memory limit set, so the "
            "host ran out of memory; set `memory` in the task's hints to a size that fits",
            "OOMKilled",
        )
    if exit_code == 0:
        return done()
    klass = exitcodes.failure_class(exit_code)
    if exit_code in (126, 127) and any("exec " in line and " failed" in line for line in log_tail[-3:]):
        # The init process (or the engine) could not execute the command: a setup error, not the task's.
        return done(
            f"exit code {exit_code}: the container could not run {command!r} ({log_tail[-1].strip()}); does the "
            "image provide that interpreter? (set DockerExecutor(python=...) / --docker-python)",
            "ContainerStart",
        )
    no_kannon = logtail.kannon_import_failure(log_tail) if exit_code == 1 else None
    if no_kannon is not None:
        return done(logtail.kannon_import_reason(command, no_kannon, "DockerExecutor(python=...) / --docker-python"),
                    "KannonNotImportable")  # fmt: skip
    if exit_code == 137:
        # The engine knows whether its memory limit did it, so say so rather than guess.
        reason = (
            "killed by SIGKILL (exit code 137), not at the container's memory limit (the engine reports no OOM "
            "kill): killed from outside, or the host ran out of memory"
        )
    else:
        reason = exitcodes.describe(exit_code, log_tail)
        if exit_code in DOCKER_HINTS:
            reason += f" ({DOCKER_HINTS[exit_code]})"
    error = str(state.get("Error") or "").strip()
    if error:
        reason += f"; engine: {error}"
    return done(reason, klass)


def secrets_owner(user: str) -> int | None:
    """The uid to give the secrets file for a container running as ``user`` (``uid[:gid]`` or a name): None when
    the master's own file already fits (the same uid, or root, who reads anything). Raises ValueError when no file
    can be made readable to that user only."""
    name = user.split(":", 1)[0]
    if name == "root":
        return None
    if not name.isdigit():
        raise ValueError(f"the container user {user!r} is a name kannon cannot map to a uid without the image; "
                         "give DockerExecutor(user='UID:GID') so the secrets file can be made readable to that "
                         "user only")  # fmt: skip
    uid = int(name)
    if uid in (0, os.getuid()):
        return None
    if os.geteuid() != 0:
        raise ValueError(f"the container runs as uid {uid}, and only root may give it the secrets file (mode 0600, "
                         "owned by the container's user); run the master as root, or the container as the master's "
                         "uid (the default)")  # fmt: skip
    return uid


def _without_userinfo(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//", url)  # ssh://user:password@host must not end up in a log


def engine_address(base_url: str | None = None) -> str:
    """Where the SDK will connect, for error messages (never credentials: TLS material is not shown)."""
    if base_url:
        return _without_userinfo(base_url)
    host = os.environ.get("DOCKER_HOST")
    if host:
        return f"{_without_userinfo(host)} (from DOCKER_HOST)"
    return f"{DEFAULT_SOCKET} (the default socket; DOCKER_HOST is not set)"


# -- the executor ---------------------------------------------------------------------------------------------------
@dataclass
class _Handle:
    launch: Launch
    name: str
    config: dict[str, Any]
    container: Any = None  # docker.models.containers.Container once created or adopted
    started: bool = False
    cancelled: bool = False
    adopted: bool = False
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        short = self.container.id[:12] if self.container is not None else "not created"
        return f"container {self.name} ({short}{', adopted' if self.adopted else ''})"


class DockerExecutor(Executor):
    """Runs each bullet in its own container on a Docker engine.

    ``image``: default image (``Hints.image`` overrides it per task). ``volumes``: extra binds ``HOST:CTR[:ro]``.
    ``environment``: extra env for every child (under the core's ``launch.env``, which has the task's ``Hints.env``).
    ``network``: ``none``/``host``/``bridge`` or a network name (default: the engine's). ``client``: a
    ``docker.DockerClient`` to use (default: from ``DOCKER_HOST``/``base_url``). ``python``: the interpreter in the
    image. ``user``: ``uid:gid`` (default: the master's, so files on bind mounts are owned by the user).
    ``working_dir``: the container's cwd, mounted at the same path (default: the master's cwd). ``mount_cwd``: bind
    the working directory. ``init``: run a tiny init as PID 1 so SIGTERM reaches the child. ``stop_timeout``:
    grace in seconds before SIGKILL on cancel.
    """

    name = "docker"
    delivers_secrets = True  # RunInfo.secrets: a 0600 file mounted read-only

    def __init__(
        self,
        image: str,
        volumes: Sequence[str | Bind] | None = None,
        environment: Mapping[str, str] | Sequence[str] | None = None,
        network: str | None = None,
        client: Any = None,
        *,
        python: str = "python",
        user: str | None = None,
        working_dir: str | os.PathLike[str] | None = None,
        mount_cwd: bool = True,
        init: bool = True,
        stop_timeout: float = 5.0,
        base_url: str | None = None,
        ship_code: bool = False,
    ) -> None:
        super().__init__()
        self.ship_code = ship_code  # Kannon.build uploads the code archive; the child fetches it (code-shipping.md)
        if not image or not isinstance(image, str):
            raise ValueError("DockerExecutor needs an image, e.g. DockerExecutor(image='my-pipeline:latest')")
        self.image = image
        self.volumes = [v if isinstance(v, Bind) else parse_volume(v) for v in (volumes or ())]
        if environment is None:
            self.environment: dict[str, str] = {}
        elif isinstance(environment, Mapping):
            self.environment = dict(environment)
        else:
            self.environment = parse_env(environment)
        self.network = network
        self.python = python
        self.user = user if user is not None else f"{os.getuid()}:{os.getgid()}"
        self.working_dir = str(working_dir) if working_dir is not None else None
        self.mount_cwd = mount_cwd
        self.init = init
        self.stop_timeout = stop_timeout
        self.base_url = base_url
        self.default_parallelism = os.cpu_count() or 2  # containers share one machine
        self._client = client
        self._owns_client = client is None
        self._engine_info: dict[str, Any] | None = None
        self._images_present: set[str] = set()
        self._handles: dict[str, _Handle] = {}
        self._adoptable: dict[str, Any] = {}  # task id -> running container left by a previous master
        self._workdir: str | None = None
        self._secrets_uid: int | None = None

    # -- engine access -----------------------------------------------------------------------------------------------
    def _unreachable(self, err: BaseException) -> BackendError:
        return BackendError(
            f"cannot reach the Docker engine at {engine_address(self.base_url)}: {err}. Start the engine "
            "(e.g. `sudo systemctl start docker`) or set DOCKER_HOST to one that runs."
        )

    def client(self) -> Any:
        """The docker SDK client, created on first use (raises BackendError when no engine answers)."""
        if self._client is None:
            import docker
            import docker.errors

            # Pool size: every running container holds one streaming connection, plus create/inspect calls.
            pool = max(16, 2 * self.default_parallelism + 8)
            try:
                if self.base_url:
                    self._client = docker.DockerClient(base_url=self.base_url, max_pool_size=pool)
                else:
                    self._client = docker.from_env(max_pool_size=pool)
            except docker.errors.DockerException as e:
                raise self._unreachable(e) from e
        return self._client

    def engine_info(self) -> dict[str, Any]:
        if self._engine_info is None:
            import docker.errors
            import requests

            try:
                self._engine_info = dict(self.client().info())
            except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
                raise self._unreachable(e) from e
        return self._engine_info

    def _missing_image(self, image: str) -> str | None:
        """None when ``image`` is present in the engine, else what to do about it."""
        if image in self._images_present:
            return None
        import docker.errors
        import requests

        try:
            self.client().images.get(image)
        except docker.errors.ImageNotFound:
            return (
                f"image {image!r} is not present in the Docker engine at {engine_address(self.base_url)}, and kannon "
                f"does not pull images. Build it (`docker build -t {image} .`) or pull it (`docker pull {image}`), "
                "then run again."
            )
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            raise self._unreachable(e) from e
        self._images_present.add(image)
        return None

    # -- lifecycle -----------------------------------------------------------------------------------------------------
    def start(self, run: RunInfo, report: Report) -> None:
        super().start(run, report)
        self._workdir = os.path.abspath(self.working_dir or os.getcwd())  # fixed for the run, like the master's
        self._secrets_uid = None
        if run.secrets:
            try:
                self._secrets_uid = secrets_owner(self.user)
            except ValueError as e:
                raise BackendError(f"env_to_inherit: {e}") from e
        self._remove_secret_files()  # a crashed master's (running containers keep the inode they mounted)
        self.engine_info()  # fail now, naming the engine address, rather than at the first launch
        import docker.errors
        import requests

        try:
            self._sweep_previous(run.run_id)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            raise BackendError(f"cannot clean up the containers a previous run {run.run_id} left: {e}") from e

    def _run_containers(self, run_id: str) -> list[Any]:
        return list(self.client().containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"}))

    def _sweep_previous(self, run_id: str) -> None:
        """Containers of this run id left by a master that died without cleaning up.

        Ended ones are removed (their result is already in the workspace, or the task runs again); the newest
        running one per task id is kept for adoption by :meth:`launch`, older duplicates are removed.
        """
        running: dict[str, list[Any]] = {}
        for c in self._run_containers(run_id):
            task_id = c.labels.get(LABEL_TASK, "")
            if task_id and (c.status == "running" or _yielded(c)):  # a yield its master never read: adopted too
                running.setdefault(task_id, []).append(c)
            else:
                self._remove(c)
        for task_id, containers in running.items():
            containers.sort(key=lambda c: int(c.labels.get(LABEL_ATTEMPT, "0") or 0))
            *stale, newest = containers
            for c in stale:
                self._stop_and_remove(c)
            self._adoptable[task_id] = newest

    def prepare(self, modules: Sequence[str]) -> None:
        problem = self._missing_image(self.image)
        if problem:
            raise BackendError(problem)

    def validate(self, family: str, hints: Hints) -> list[str]:
        problems = hint_problems(hints, self.engine_info())
        if hints.image:
            missing = self._missing_image(hints.image)
            if missing:
                problems.append(missing.rstrip("."))  # the planner appends its own sentence
        return problems

    def spec_transport(self, size: int) -> SpecTransport:
        return "local"  # the run directory is bind-mounted at the same path

    # -- launching -----------------------------------------------------------------------------------------------------
    def import_failures(self, modules: Sequence[str], sys_path: Sequence[str], image: str | None = None,
                        timeout: float = 300.0) -> dict[str, str]:  # fmt: skip
        """Plan-time probe (kannon.importcheck): import ``modules`` in one container of ``image`` that runs no task,
        with a child's user, working directory, mounts, environment and ``sys_path`` first; {module: error} for
        those that fail. Cached per image id, module set and sys.path (an image id names its contents)."""
        import docker.errors
        import requests

        from kannon.plan import IMPORT_PROBE

        image = image or self.image
        problem = self._missing_image(image)
        if problem:
            return dict.fromkeys(modules, problem)
        try:
            image_id = str(self.client().images.get(image).id)
            key = (image_id, tuple(sorted(modules)), tuple(sys_path))
            if key in _PROBED:
                return dict(_PROBED[key])
            workdir = self._workdir or os.path.abspath(self.working_dir or os.getcwd())
            binds = plan_binds(self.volumes, [workdir] if self.mount_cwd else [])
            config: dict[str, Any] = {
                "image": image, "user": self.user, "working_dir": workdir, "volumes": [b.spec() for b in binds],
                "environment": {"PYTHONUNBUFFERED": "1", **self.environment}, "detach": True,
                "command": [self.python, "-c", IMPORT_PROBE, json.dumps(list(sys_path)), json.dumps(list(modules))],
                "labels": {LABEL_MANAGED: "kannon", "kannon.io/probe": "imports"},
            }  # fmt: skip
            if self.network in ("none", "host", "bridge"):
                config["network_mode"] = self.network
            container = self.client().containers.create(**config)
            try:
                container.start()
                status = container.wait(timeout=timeout)
                out = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
                err = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
            finally:
                with contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException):
                    container.remove(force=True)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            raise self._unreachable(e) from e
        try:
            failed = {str(k): str(v) for k, v in json.loads(out.strip().splitlines()[-1]).items()}
        except (IndexError, ValueError, AttributeError):
            tail = (err.strip().splitlines() or ["no output"])[-1]
            why = f"the import probe in image {image} failed (exit {status.get('StatusCode')}): {tail}"
            return dict.fromkeys(modules, why + "; is --docker-python right?")
        _PROBED[key] = failed
        return dict(failed)

    def container_config(self, launch: Launch) -> dict[str, Any]:
        """Keyword arguments for ``client.containers.create`` (also what the adoption hash is taken of)."""
        workdir = self._workdir or os.path.abspath(self.working_dir or os.getcwd())
        defaults = [workdir] if self.mount_cwd else []
        if self.run is not None:
            defaults.append(str(self.run.run_dir))
        binds = plan_binds(self.volumes, defaults)
        secret_file = self._secret_file(launch)
        if secret_file is not None:
            binds.append(Bind(secret_file, secretfile.CONTAINER_PATH, read_only=True))
        labels = {
            **{str(k): str(v) for k, v in launch.labels.items()},
            LABEL_MANAGED: "kannon",
            LABEL_RUN: launch.run_id,
            LABEL_TASK: launch.task_id,
            LABEL_ATTEMPT: str(launch.attempt),
            LABEL_FAMILY: launch.family,
        }
        config: dict[str, Any] = {
            "image": launch.hints.image or self.image,
            "command": self.command(launch),
            "name": container_name(launch.run_id, launch.task_id, launch.attempt),
            "labels": labels,
            # executor env < the run's secrets < launch.env (the task's hints < kannon's own; docs/design.md). The
            # secrets are not here (`docker inspect` shows this): the child reads them from the mounted file, which
            # holds none of launch.env's names. Unbuffered by default: without a tty Python block-buffers stdout, and
            # the log would arrive late and out of order with stderr.
            "environment": {"PYTHONUNBUFFERED": "1", **self.environment, **launch.env,
                            **({secretfile.ENV_VAR: secretfile.CONTAINER_PATH} if secret_file else {}),
                            **self._result_env(launch)},
            "user": self.user,
            "working_dir": workdir,
            "volumes": [b.spec() for b in binds],
            "init": self.init,
            "detach": True,
            **resource_kwargs(launch.hints),
        }
        if self.network in ("none", "host", "bridge") or (self.network or "").startswith("container:"):
            config["network_mode"] = self.network
        elif self.network:
            config["network"] = self.network
        config["labels"][LABEL_CONFIG] = config_hash(config)
        return config

    def _result_env(self, launch: Launch) -> dict[str, str]:
        """The child's record goes to a file in the run directory, which is bind-mounted at the same path; and the
        container is this attempt's alone, so its memory cgroup's peak is the task's (kannon.measure)."""
        if self.run is None:
            return {}
        path = childresult.result_file(self.run.run_dir, self.run.invocation_id, launch)
        with contextlib.suppress(OSError):
            path.unlink()  # a record left by an earlier master of this run must not pass for this attempt's
        return {childresult.RESULT_PATH_ENV: str(path), measure.OWN_CONTAINER_ENV: "1"}

    # -- secrets: a file per container, never its config (kannon.secretfile) -----------------------------------------
    def _secret_values(self, launch: Launch) -> dict[str, str]:
        secrets = self.run.secrets if self.run is not None else {}
        return {k: v for k, v in secrets.items() if k not in launch.env}  # a Hints.env name wins

    def _secret_file(self, launch: Launch) -> str | None:
        """Where this container's secrets file lives on the host (a fixed name: adoption compares the mounts)."""
        if self.run is None or not self._secret_values(launch):
            return None
        name = container_name(launch.run_id, launch.task_id, launch.attempt)
        return str(self.run.run_dir / "secrets" / f"{name}.json")

    def _write_secret_file(self, launch: Launch) -> None:
        path = self._secret_file(launch)
        if path is None:
            return
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        secretfile.write(path, self._secret_values(launch), self._secrets_uid)

    def _remove_secret_file(self, launch: Launch) -> None:
        path = self._secret_file(launch)
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _remove_secret_files(self) -> None:
        if self.run is not None:
            shutil.rmtree(self.run.run_dir / "secrets", ignore_errors=True)

    def command(self, launch: Launch) -> list[str]:
        """The child's argv (the core builds it; an override point for tests that run other programs)."""
        return launch.argv(self.python)

    def launch(self, launch: Launch) -> None:
        config = self.container_config(launch)
        problem = self._missing_image(config["image"])
        if problem:
            raise BackendError(problem)
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        handle = _Handle(launch, config["name"], config)
        with self._lock:
            self._handles[launch.key] = handle
        self.track(launch.key)
        # One thread per container. The container's output must be streamed per container anyway (a blocking HTTP
        # stream each); that stream ends exactly when the container ends, and wait() then returns at once. So the
        # same thread knows the end without polling, and no second mechanism (the engine's event stream) has to be
        # correlated with it. The number of threads is bounded by the core's max_parallel.
        handle.thread = threading.Thread(target=self._run, args=(handle,), name=f"kannon-docker-{handle.name}")
        handle.thread.daemon = True
        handle.thread.start()

    def _run(self, h: _Handle) -> None:
        finished: Finished | None = None
        try:
            finished = self._run_container(h)
        except Exception as e:  # whatever happens, the core must get its Finished
            finished = self._failure(h, e)
        finally:
            if h.container is not None:
                try:
                    self._remove(h.container)
                except Exception as e:  # the Finished below must go out regardless
                    log.warning("could not remove %s: %s", h.where, e)
            with contextlib.suppress(OSError):
                self._remove_secret_file(launch=h.launch)
            if finished is None:
                finished = Finished(h.launch.key, None, "the docker backend lost track of the container", where=h.where)
            with self._lock:
                self._handles.pop(h.launch.key, None)
            self.emit(finished)

    def _run_container(self, h: _Handle) -> Finished:
        import docker.errors

        launch = h.launch
        container = self._claim_adoptable(launch.task_id, h.config)
        if container is None:
            container = self._create(h)
        else:
            h.adopted = True
        with self._lock:
            h.container = container
            cancelled = h.cancelled
        if cancelled:
            return Finished(launch.key, None, "cancelled before it started", "Cancelled", where=h.where)
        if not h.adopted:
            try:
                container.start()
            except docker.errors.APIError as e:
                return Finished(
                    launch.key,
                    None,
                    f"the engine could not start the container: {e.explanation or e}. Check that the image provides "
                    f"the interpreter {self.python!r} (DockerExecutor(python=...)) and the requested devices",
                    "ContainerStart",
                    where=h.where,
                )
        with self._lock:
            h.started = True
            cancelled = h.cancelled
        if cancelled:  # cancel() arrived between create and start: it could not stop what had not started
            self._stop(container)
        self.emit(Started(launch.key, h.where))
        self._stream_log(h)
        status = container.wait()  # returns at once: the log stream ended because the container did
        container.reload()
        state = dict(container.attrs.get("State") or {})
        if state.get("ExitCode") is None:
            state["ExitCode"] = status.get("StatusCode")
        finished = classify(launch, state, cancelled=h.cancelled, where=h.where,
                            log_tail=tail_lines(launch.log_path), command=h.config["command"][0])  # fmt: skip
        # Classified on the raw lines (the child's reason line is there); reported shaped, as on every backend.
        return dataclasses.replace(finished, log_tail=logtail.read_tail(launch.log_path),
                                   result=_read_result(launch, container.attrs))  # fmt: skip

    def _create(self, h: _Handle) -> Any:
        import docker.errors

        containers = self.client().containers
        self._write_secret_file(h.launch)
        for attempt in range(3):
            try:
                return containers.create(**h.config)
            except docker.errors.APIError as e:
                if e.status_code != 409 or attempt == 2:
                    raise
            # The name (run, task, attempt) is taken. If one of our own launches holds it, this is a duplicate
            # launch; otherwise it is a leftover of this run that start() did not see (its master was dying, or
            # another executor is removing it right now), and replacing it is safe.
            with self._lock:
                duplicate = any(o is not h and o.name == h.name for o in self._handles.values())
            try:
                old = containers.get(h.name)
            except docker.errors.NotFound:
                continue  # gone in the meantime
            if duplicate or old.labels.get(LABEL_RUN) != h.config["labels"][LABEL_RUN]:
                raise BackendError(f"a container named {h.name} already exists (another launch of the same attempt, "
                                   "or not kannon's); remove it with `docker rm -f` if it is stale")  # fmt: skip
            self._stop_and_remove(old)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _claim_adoptable(self, task_id: str, config: Mapping[str, Any]) -> Any:
        import docker.errors

        with self._lock:
            container = self._adoptable.pop(task_id, None)
        if container is None:
            return None
        try:
            container.reload()
        except docker.errors.NotFound:
            return None  # it ended and went in the meantime
        if (container.status == "running" or _yielded(container)) and container.labels.get(
                LABEL_CONFIG) == config["labels"][LABEL_CONFIG]:  # fmt: skip
            return container
        self._stop_and_remove(container)  # ended meanwhile, or started with other code/limits: run afresh
        return None

    def _stream_log(self, h: _Handle) -> None:
        """Copy the container's output (from its start) into the attempt's log file until the container ends."""
        follow = self.run is not None and self.run.follow_logs
        pending = b""
        with h.launch.log_path.open("wb") as log:
            for chunk in h.container.logs(stream=True, follow=True, stdout=True, stderr=True):
                log.write(chunk)
                log.flush()  # the file is the live view of a running task
                if follow:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    if len(pending) > MAX_LINE:  # a child writing without newlines must not grow this forever
                        lines.append(pending)
                        pending = b""
                    for line in lines:
                        self.emit(LogLine(h.launch.key, line.decode("utf-8", "replace").rstrip("\r")))
        if follow and pending:
            self.emit(LogLine(h.launch.key, pending.decode("utf-8", "replace")))

    def _failure(self, h: _Handle, e: BaseException) -> Finished:
        import docker.errors
        import requests

        tail = tail_lines(h.launch.log_path)
        if h.cancelled:  # e.g. the container was removed under the stream by the cancel sweep
            return Finished(h.launch.key, None, "cancelled", "Cancelled", log_tail=tail, where=h.where)
        if isinstance(e, BackendError):
            return Finished(h.launch.key, None, str(e), "BackendError", log_tail=tail, where=h.where)
        if isinstance(e, (requests.exceptions.RequestException, docker.errors.DockerException)) and not isinstance(
            e, docker.errors.APIError
        ):
            reason = str(self._unreachable(e))
            return Finished(h.launch.key, None, reason, "EngineUnreachable", infra=True, log_tail=tail, where=h.where)
        if isinstance(e, docker.errors.APIError):
            return Finished(
                h.launch.key, None, f"Docker engine error: {e.explanation or e}", "EngineError", log_tail=tail,
                where=h.where,
            )  # fmt: skip
        return Finished(h.launch.key, None, f"docker backend error: {type(e).__name__}: {e}", "BackendError",
                        infra=True, log_tail=tail, where=h.where)  # fmt: skip

    # -- stopping ------------------------------------------------------------------------------------------------------
    def _stop(self, container: Any) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            container.stop(timeout=max(0, round(self.stop_timeout)))

    def _remove(self, container: Any) -> None:
        """Remove ``container``; when this returns it is gone (also if another thread or master removed it)."""
        import docker.errors

        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            if e.status_code != 409:
                raise
            # 409: a removal is already in progress elsewhere; its name is free only once it is done
            with contextlib.suppress(docker.errors.NotFound):
                container.wait(condition="removed", timeout=60)

    def _stop_and_remove(self, container: Any) -> None:
        self._stop(container)
        self._remove(container)

    def cancel(self, key: str) -> None:
        with self._lock:
            h = self._handles.get(key)
            if h is None:
                return
            h.cancelled = True
            container = h.container if h.started else None
        if container is not None:
            # stop() blocks for up to the grace period; cancelling many containers should take one period, not N
            threading.Thread(target=self._stop, args=(container,), name=f"kannon-docker-stop-{h.name}",
                             daemon=True).start()  # fmt: skip

    def cancel_all(self, timeout: float = 30.0) -> list[str]:
        # Meanwhile, anything else of this run goes too: containers adopted-but-unclaimed from a previous master,
        # or one created while the master was dying.
        sweeper = threading.Thread(target=self._remove_leftovers, name="kannon-docker-sweep", daemon=True)
        sweeper.start()
        left = super().cancel_all(timeout)
        sweeper.join(timeout=max(1.0, timeout))
        return left

    def _remove_leftovers(self) -> None:
        """Stop and remove, in parallel, every container of this run that no live launch of ours owns."""
        import docker.errors
        import requests

        if self.run is None or self._client is None:
            return
        with self._lock:
            owned = {h.container.id for h in self._handles.values() if h.container is not None}
            self._adoptable = {}
        try:
            containers = [c for c in self._run_containers(self.run.run_id) if c.id not in owned]
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return  # the engine is gone: nothing of ours runs on it any more

        def stop_and_remove(container: Any) -> None:
            with contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException):
                self._stop_and_remove(container)

        threads = [threading.Thread(target=stop_and_remove, args=(c,), daemon=True) for c in containers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def close(self) -> None:
        # The core waits for every Finished before closing, so live launches here mean it gave up on them: stop
        # them rather than leave containers running unobserved. Then the previous master's running containers
        # this run did not need (the task was complete, or its command changed).
        if self.live_keys():
            self.cancel_all(timeout=self.stop_timeout + 60)
        self._remove_leftovers()
        self._remove_secret_files()
        if self._client is not None and self._owns_client:
            self._client.close()
            self._client = None


# -- plugin registration --------------------------------------------------------------------------------------------
def add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--image", dest="docker_image", metavar="IMG", help="docker: image for the bullets")
    group.add_argument(
        "--volume", dest="docker_volumes", metavar="HOST:CTR[:ro]", action="append", default=[],
        help="docker: extra bind mount (repeatable); the working directory is mounted by default",
    )  # fmt: skip
    group.add_argument(
        "--env", dest="docker_env", metavar="K=V", action="append", default=[],
        help="docker: environment variable for the bullets (repeatable; a bare K copies it from here)",
    )  # fmt: skip
    group.add_argument("--docker-network", dest="docker_network", metavar="NET", help="docker: network (mode)")
    group.add_argument("--docker-python", dest="docker_python", metavar="PATH", default="python",
                       help="docker: the interpreter in the image (default: python)")  # fmt: skip


def from_options(ns: argparse.Namespace) -> DockerExecutor:
    image = getattr(ns, "docker_image", None)
    if not image:
        raise BackendError("the docker backend needs an image: pass --image IMG")
    try:
        return DockerExecutor(
            image,
            volumes=getattr(ns, "docker_volumes", None) or [],
            environment=parse_env(getattr(ns, "docker_env", None) or []),
            network=getattr(ns, "docker_network", None),
            python=getattr(ns, "docker_python", None) or "python",
        )
    except ValueError as e:
        raise BackendError(str(e)) from e


@hookimpl
def kannon_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            name="docker",
            factory=DockerExecutor,
            description="one container per bullet on a Docker engine (pip install 'kannon[docker]')",
            add_options=add_options,
            from_options=from_options,
        )
    ]


__all__ = ["Bind", "DockerExecutor", "classify", "hint_problems", "parse_env", "parse_volume", "plan_binds"]


def _read_result(launch: Launch, attrs: Mapping[str, Any]) -> childresult.ChildResult | None:
    """The record at the path the container was given (an adopted container names the master that made it)."""
    env = (attrs.get("Config") or {}).get("Env") or []
    prefix = childresult.RESULT_PATH_ENV + "="
    path = next((e[len(prefix) :] for e in env if isinstance(e, str) and e.startswith(prefix)), None)
    return childresult.read_for(path, launch) if path else None


def _yielded(container: Any) -> bool:
    """Did this ended container's child stop at a yield (exit 10; its request is in the run directory)?"""
    state = (container.attrs or {}).get("State") or {}
    return container.status == "exited" and state.get("ExitCode") == exitcodes.REQUESTED
