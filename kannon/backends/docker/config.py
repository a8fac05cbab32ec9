"""The Docker backend's configuration: labels, bind mounts, environment, container names, resource limits, what an
engine can honour, and where the SDK connects. Pure functions, unit-tested without an engine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kannon.hints import Hints

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
