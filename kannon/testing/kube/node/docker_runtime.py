"""The Docker runtime: each container a container on the local Docker engine (docker SDK)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from decimal import Decimal
from typing import Any

from kannon.testing.kube.node.env import expand
from kannon.testing.kube.node.logs import ContainerLog
from kannon.testing.kube.node.runtime import ContainerHandle, ImageError, StartError
from kannon.testing.kube.store import Obj
from kannon.testing.kube.validation import parse_quantity

log = logging.getLogger("kannon.testing.kube")


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
