"""The Docker backend: one container per bullet on a Docker engine, through the ``docker`` SDK.

The package, one part per module:

* :mod:`.config` — labels, bind mounts, environment, container names, resource limits, what an engine can honour
  (pure functions, unit-tested without an engine); :mod:`.classify` — what a container's end means;
* :mod:`.engine` — the SDK client, the engine's info and images, stopping and removing containers;
* :mod:`.containers` — a bullet's container: create arguments, secrets file, the plan-time import probe;
* :mod:`.running` — one container on its own thread: create or adopt, start, stream its log, classify, remove;
* :mod:`.executor` — :class:`DockerExecutor`: start (with the sweep of a previous master's containers), cancel,
  close; :mod:`.options` — the command-line options.

Status is event-driven with one thread per container: the thread's log stream ends exactly when the container
ends. No polling. The package imports nothing heavy: the ``docker`` SDK is imported when an executor first talks
to the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kannon import lazy
from kannon.backends.docker.classify import classify  # eager: importing the submodule would bind its name here
from kannon.hookspecs import hookimpl

if TYPE_CHECKING:
    from kannon.backends.docker.config import (
        LABEL_ATTEMPT,
        LABEL_CONFIG,
        LABEL_FAMILY,
        LABEL_MANAGED,
        LABEL_RUN,
        LABEL_TASK,
        Bind,
        config_hash,
        container_name,
        engine_address,
        hint_problems,
        parse_env,
        parse_volume,
        plan_binds,
        resource_kwargs,
        secrets_owner,
    )
    from kannon.backends.docker.executor import DockerExecutor
    from kannon.backends.docker.options import add_options, from_options
    from kannon.plugins import BackendSpec

_CONFIG = ("LABEL_ATTEMPT", "LABEL_CONFIG", "LABEL_FAMILY", "LABEL_MANAGED", "LABEL_RUN", "LABEL_TASK", "Bind",
           "config_hash", "container_name", "engine_address", "hint_problems", "parse_env", "parse_volume",
           "plan_binds", "resource_kwargs", "secrets_owner")  # fmt: skip
__getattr__ = lazy.attributes(__name__, {"DockerExecutor": "executor", "add_options": "options",
                                         "from_options": "options", **dict.fromkeys(_CONFIG, "config")})  # fmt: skip


@hookimpl
def kannon_backends() -> list[BackendSpec]:
    from kannon.backends.docker.executor import DockerExecutor
    from kannon.backends.docker.options import add_options, from_options
    from kannon.plugins import BackendSpec

    return [
        BackendSpec(
            name="docker",
            factory=DockerExecutor,
            description="one container per bullet on a Docker engine (pip install 'kannon[docker]')",
            add_options=add_options,
            from_options=from_options,
        )
    ]


__all__ = [
    "LABEL_ATTEMPT",
    "LABEL_CONFIG",
    "LABEL_FAMILY",
    "LABEL_MANAGED",
    "LABEL_RUN",
    "LABEL_TASK",
    "Bind",
    "DockerExecutor",
    "add_options",
    "classify",
    "config_hash",
    "container_name",
    "engine_address",
    "from_options",
    "hint_problems",
    "kannon_backends",
    "parse_env",
    "parse_volume",
    "plan_binds",
    "resource_kwargs",
    "secrets_owner",
]
