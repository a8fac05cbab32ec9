"""The Docker engine as the executor uses it: the SDK client made on first use, the engine's info, which images it
has, and stopping and removing containers. The ``docker`` SDK is imported inside the methods.
"""

from __future__ import annotations

import contextlib
from typing import Any

from kannon import exitcodes
from kannon.backends.base import BackendError, Executor
from kannon.backends.docker.config import LABEL_RUN, engine_address


class DockerEngine(Executor):
    """The engine half of :class:`~kannon.backends.docker.DockerExecutor`."""

    base_url: str | None
    default_parallelism: int
    stop_timeout: float
    _client: Any
    _engine_info: dict[str, Any] | None
    _images_present: set[str]

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
            import requests

            import docker.errors

            try:
                self._engine_info = dict(self.client().info())
            except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
                raise self._unreachable(e) from e
        return self._engine_info

    def _missing_image(self, image: str) -> str | None:
        """None when ``image`` is present in the engine, else what to do about it."""
        if image in self._images_present:
            return None
        import requests

        import docker.errors

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

    def _run_containers(self, run_id: str) -> list[Any]:
        return list(self.client().containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"}))

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


def yielded(container: Any) -> bool:
    """Did this ended container's child stop at a yield (exit 10; its request is in the run directory)?"""
    state = (container.attrs or {}).get("State") or {}
    return container.status == "exited" and state.get("ExitCode") == exitcodes.REQUESTED
