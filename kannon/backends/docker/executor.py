"""The Docker executor: one container per bullet on a Docker engine, through the ``docker`` SDK.

Its parts, one per module: :mod:`.engine` (the SDK client, images, stop and remove), :mod:`.containers` (what a
container is), :mod:`.running` (one container's thread); here the run's lifecycle: start, the sweep of a previous
master's containers, cancel and close.

After a master is killed (SIGKILL: no cleanup ran), a rerun of the same pipeline has the same run id and finds the
old containers by label in :meth:`DockerExecutor.start`: finished ones are removed; a still-running one is
*adopted* when the new run launches the same task id with the same command and limits (its log is streamed from
the beginning into the new attempt's log). Running containers that are not claimed are stopped and removed when the
run ends (``close``/``cancel_all``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from kannon.backends.base import BackendError, Report, RunInfo, SpecTransport
from kannon.backends.docker.config import (
    LABEL_ATTEMPT,
    LABEL_TASK,
    Bind,
    hint_problems,
    parse_env,
    parse_volume,
    secrets_owner,
)
from kannon.backends.docker.engine import yielded
from kannon.backends.docker.running import ContainerRunner
from kannon.hints import Hints


class DockerExecutor(ContainerRunner):
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
            self.environment = {}
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
        self._engine_info = None
        self._images_present = set()
        self._handles = {}
        self._adoptable = {}
        self._workdir = None
        self._secrets_uid = None

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
        import requests

        import docker.errors

        try:
            self._sweep_previous(run.run_id)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            raise BackendError(f"cannot clean up the containers a previous run {run.run_id} left: {e}") from e

    def _sweep_previous(self, run_id: str) -> None:
        """Containers of this run id left by a master that died without cleaning up.

        Ended ones are removed (their result is already in the workspace, or the task runs again); the newest
        running one per task id is kept for adoption by :meth:`launch`, older duplicates are removed.
        """
        running: dict[str, list[Any]] = {}
        for c in self._run_containers(run_id):
            task_id = c.labels.get(LABEL_TASK, "")
            if task_id and (c.status == "running" or yielded(c)):  # a yield its master never read: adopted too
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

    # -- stopping ------------------------------------------------------------------------------------------------------
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
        import requests

        import docker.errors

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
