"""What a bullet's container is: its create arguments (image, command, mounts, environment, limits, labels), its
secrets file, and the plan-time import probe, which runs the same setup with no task.

Each attempt runs the same child entrypoint as every backend (``launch.argv(executor.python)``), with the master's
working directory and the run's hand-off directory bind-mounted at the same paths, the master's uid:gid, the
per-task resource hints as cgroup limits, and labels that identify run, task and attempt.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Sequence
from typing import Any

from kannon import childresult, measure, secretfile
from kannon.backends.base import Launch
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
    plan_binds,
    resource_kwargs,
)
from kannon.backends.docker.engine import DockerEngine

#: import probe results: (image id, modules, sys.path) -> {module: error}; an image id names fixed contents
_PROBED: dict[tuple[str, tuple[str, ...], tuple[str, ...]], dict[str, str]] = {}


class ContainerSpecs(DockerEngine):
    """The container-building half of :class:`~kannon.backends.docker.DockerExecutor`."""

    image: str
    volumes: list[Bind]
    environment: dict[str, str]
    network: str | None
    python: str
    user: str
    working_dir: str | None
    mount_cwd: bool
    init: bool
    _workdir: str | None
    _secrets_uid: int | None

    def import_failures(self, modules: Sequence[str], sys_path: Sequence[str], image: str | None = None,
                        timeout: float = 300.0) -> dict[str, str]:  # fmt: skip
        """Plan-time probe (kannon.importcheck): import ``modules`` in one container of ``image`` that runs no task,
        with a child's user, working directory, mounts, environment and ``sys_path`` first; {module: error} for
        those that fail. Cached per image id, module set and sys.path (an image id names its contents)."""
        import requests

        import docker.errors
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

    def command(self, launch: Launch) -> list[str]:
        """The child's argv (the core builds it; an override point for tests that run other programs)."""
        return launch.argv(self.python)

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
