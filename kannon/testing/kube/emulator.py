"""KubeEmulator: an in-process Kubernetes control plane (apiserver + Job controller + one node) on 127.0.0.1."""

from __future__ import annotations

import base64
import copy
import http.client
import os
import shutil
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import yaml

from kannon.testing.kube.controller import ControllerManager
from kannon.testing.kube.deletion import delete_job
from kannon.testing.kube.errors import not_found
from kannon.testing.kube.faults import Faults
from kannon.testing.kube.kueue import Kueue
from kannon.testing.kube.node.docker_runtime import DockerRuntime
from kannon.testing.kube.node.kubelet import Kubelet, Node
from kannon.testing.kube.node.process_runtime import ProcessRuntime, default_workdir, remove_workdir
from kannon.testing.kube.node.runtime import Runtime
from kannon.testing.kube.quota import ResourceQuotas
from kannon.testing.kube.server import EmulatorHTTPServer
from kannon.testing.kube.store import Obj, Store
from kannon.testing.kube.tls import Credentials, make_credentials

T = TypeVar("T")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class KubeEmulator:
    """An emulated Kubernetes control plane speaking the real REST API to the official client.

    ``runtime="process"`` runs each pod's container as a local process group; ``runtime="docker"`` runs it on the
    local Docker engine (``docker_image`` then replaces every pod's image, handy when only a locally built image
    exists). ``namespaces``: a fixed set of namespaces (others answer 404), or None to accept any namespace.
    ``warm_imports`` (process runtime): modules, e.g. ``["gokart", "kannon.childwarm:warm_up"]`` (``MOD:FUNC``
    also calls FUNC once), that one zygote per interpreter imports once; pods whose command is
    ``python -m/-c/SCRIPT ...`` are forked from it instead of starting a fresh interpreter each (kannon.forkserver
    says what they then share). None: every pod starts cold.
    ``warm_interpreters``: the interpreters whose zygotes start with the emulator, in the background (default: this
    interpreter); others start at their first pod. ``warm_up()`` waits for them.
    It serves HTTPS only, with a CA of its own, and answers 401 to any request without its bearer token (``token``)
    except the health and version endpoints; ``api_client()``, ``write_kubeconfig()``, ``connection()`` and
    ``ssl_context()`` hand out clients that carry both (docs/emulator.md).
    ``backoff_base``: the Job controller's pod re-creation back-off (real clusters: 10 s doubling, capped at 6 min;
    0 here so tests run fast). ``bookmark_interval``: seconds between watch BOOKMARK events (real: ~1 min).
    """

    def __init__(
        self,
        runtime: str = "process",
        namespace: str = "default",
        docker_image: str | None = None,
        *,
        namespaces: list[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        bookmark_interval: float = 1.0,
        watch_max_seconds: float | None = None,
        history_limit: int = 2000,
        backoff_base: float = 0.0,
        node_labels: dict[str, str] | None = None,
        node_allocatable: dict[str, str] | None = None,
        image_env: dict[str, str] | None = None,
        workdir: str | None = None,
        docker_client: Any = None,
        warm_imports: list[str] | None = None,
        warm_interpreters: list[str] | None = None,
    ) -> None:
        if runtime not in ("process", "docker"):
            raise ValueError(f"runtime must be 'process' or 'docker', not {runtime!r}")
        self.runtime_name = runtime
        self.namespace = namespace
        self.docker_image = docker_image
        self.bookmark_interval = bookmark_interval
        self.watch_max_seconds = watch_max_seconds
        self.stopping = False
        self.store = Store(history_limit=history_limit)
        self._fixed_namespaces = None if namespaces is None else {*namespaces, namespace}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._requests_lock = threading.Lock()
        self.faults = Faults(self.store.compact, self.store.end_watches, self.store.expire_watches,
                             self._delete_job_externally, namespace)  # fmt: skip
        self._own_workdir = workdir is None
        self.workdir = workdir or default_workdir()
        rt: Runtime
        self._prewarm: list[str] = []
        self._prewarm_thread: threading.Thread | None = None
        if runtime == "process":
            rt = ProcessRuntime(self.workdir, image_env, warm_imports=warm_imports)
            if warm_imports is not None:
                self._prewarm = list(warm_interpreters) if warm_interpreters is not None else [sys.executable]
        else:
            rt = DockerRuntime(docker_image, docker_client)
        self.node = Node(node_labels, node_allocatable)
        self.kubelet = Kubelet(self.store, rt, self.faults, self.node)
        self.controller = ControllerManager(self.store, self.kubelet, backoff_base=backoff_base)
        # admission: ResourceQuota on pods and a Kueue-like queue for labelled Jobs (quota.py, kueue.py)
        self.quotas = self.controller.jobs.quotas = ResourceQuotas(self.store, self.controller.resync)
        self.kueue = Kueue(self.store)
        self._host, self._port = host, port
        self.credentials: Credentials = make_credentials([host])
        self._tls_dir: str | None = None
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for ns in sorted(self._fixed_namespaces or {namespace, *SYSTEM_NAMESPACES}):
            self._ensure_namespace(ns, create=True)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> KubeEmulator:
        if self._server is not None:
            return self
        if self._prewarm and isinstance(self.kubelet.runtime, ProcessRuntime):
            self._prewarm_thread = self.kubelet.runtime.prewarm(self._prewarm)
        self.controller.start()
        self.kueue.start()
        self._tls_dir = tempfile.mkdtemp(prefix="kannon-emu-ca-")
        Path(self.ca_file).write_bytes(self.credentials.ca_pem)
        self._server = EmulatorHTTPServer((self._host, self._port), self, self.credentials.server_context())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True, name="kube-emulator-http"
        )
        self._thread.start()
        return self

    def warm_up(self, timeout: float = 120) -> None:
        """Wait until the zygotes of ``warm_interpreters`` are ready (or failed: their pods then start cold)."""
        if self._prewarm_thread is not None:
            self._prewarm_thread.join(timeout)
            if self._prewarm_thread.is_alive():
                raise TimeoutError(f"warm pod zygotes not ready within {timeout}s")

    def stop(self) -> None:
        """Stop serving, end every watch/log stream, and kill every pod process (whole process groups)."""
        if self.stopping:
            return
        self.stopping = True
        if self._server is not None:
            self._server.shutdown()
        self.store.end_watches()
        self.kubelet.shutdown()
        self.controller.stop()
        self.kueue.stop()
        if self._server is not None:
            self._server.close_all()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        if self._own_workdir:
            remove_workdir(self.workdir)
        if self._tls_dir is not None:
            shutil.rmtree(self._tls_dir, ignore_errors=True)

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- client wiring -----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        host, port = self._server.server_address[:2]
        return f"https://{host!s}:{port}"

    @property
    def token(self) -> str:
        """The bearer token every request (but /healthz, /livez, /readyz, /version) must carry."""
        return self.credentials.token

    @property
    def ca_file(self) -> str:
        """Path of the emulator's CA certificate (PEM), valid while the emulator runs."""
        if self._tls_dir is None:
            raise RuntimeError("the emulator is not started")
        return os.path.join(self._tls_dir, "ca.crt")

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSL context that trusts this emulator's CA (for urllib / http.client)."""
        return self.credentials.client_context()

    def configuration(self) -> Any:
        """A kubernetes.client.Configuration for this emulator: its URL, its CA and its bearer token."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        cfg.ssl_ca_cert = self.ca_file
        # The prefix goes into the value: clients 36+ look prefixes up under "BearerToken", older ones under
        # "authorization"; the key "authorization" itself is read by both.
        cfg.api_key = {"authorization": f"Bearer {self.token}"}
        return cfg

    def api_client(self) -> Any:
        """A new kubernetes.client.ApiClient pointed at this emulator."""
        from kubernetes import client

        return client.ApiClient(self.configuration())

    def connection(self, timeout: float = 30, token: str | None = "") -> http.client.HTTPSConnection:
        """A raw HTTPS connection to the emulator that sends ``Authorization: Bearer <token>`` with each request.

        ``token``: "" (default) the emulator's own, None sends no Authorization header, anything else that token.
        """
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        host, port = self._server.server_address[:2]
        return _BearerConnection(
            str(host), int(port), self.token if token == "" else token, timeout=timeout, context=self.ssl_context()
        )

    def write_kubeconfig(self, path: str | os.PathLike[str], namespace: str | None = None) -> Path:
        """A kubeconfig whose current context points at this emulator (usable by config.load_kube_config)."""
        name = "kannon-emulator"
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(self.credentials.ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": name, "user": {"token": self.token}}],
            "contexts": [
                {"name": name, "context": {"cluster": name, "user": name, "namespace": namespace or self.namespace}}
            ],
            "current-context": name,
            "preferences": {},
        }
        p = Path(path)
        p.touch(0o600)  # it holds the token
        p.write_text(yaml.safe_dump(doc, sort_keys=False))
        return p

    # -- inspection ----------------------------------------------------------------------------------------------

    def jobs(self, namespace: str | None = None) -> dict[str, Obj]:
        """Snapshot {name: job dict} of the Jobs in `namespace` (default: the emulator's namespace)."""
        return self.store.snapshot("jobs", namespace or self.namespace)

    def pods(self, namespace: str | None = None) -> dict[str, Obj]:
        return self.store.snapshot("pods", namespace or self.namespace)

    def pod_log(self, name: str, namespace: str | None = None) -> str:
        """The current log text of a pod's (last) container instance, "" when it has none yet."""
        pod = self.store.get("pods", namespace or self.namespace, name)
        if pod is None:
            raise not_found("pods", name)
        try:
            clog = self.kubelet.container_log(pod, None, False)
        except Exception:
            return ""
        if clog is None:
            return ""
        lines, _, _ = clog.read_from(0, None)
        return b"".join(ln for _, ln in lines).decode(errors="replace")

    def wait_for(self, predicate: Callable[[], T], timeout: float = 30, message: str | None = None) -> T:
        """Wait until predicate() is truthy and return its value; raise TimeoutError after `timeout` seconds.

        Woken by every store change (and re-checked at least every 0.1 s for state outside the store). The predicate
        runs without the store lock held, so it may call the emulator's API.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self.store.cond:
                mark = self.store.changes
            value = predicate()
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(message or f"condition not met within {timeout}s")
            with self.store.cond:
                self.store.cond.wait_for(lambda m=mark: self.store.changes != m, min(left, 0.1))  # type: ignore[misc]

    # -- internals -----------------------------------------------------------------------------------------------

    def _record_request(self, method: str, path: str, query: dict[str, str]) -> None:
        with self._requests_lock:
            self.requests.append((method, path, query))
        with self.store.cond:
            self.store.changes += 1
            self.store.cond.notify_all()

    def _ensure_namespace(self, name: str, create: bool = False) -> None:
        with self.store.cond:
            if self.store.get("namespaces", "", name) is not None:
                return
            if not create and self._fixed_namespaces is not None:
                raise not_found("namespaces", name)
            self.store.create(
                "namespaces",
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                },
            )

    def _delete_job_externally(self, ns: str, name: str, policy: str) -> Obj:
        return copy.deepcopy(delete_job(self.store, ns, name, policy))


class _BearerConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, token: str | None, **kw: Any) -> None:
        super().__init__(host, port, **kw)
        self._token = token

    def putrequest(self, method: str, url: str, skip_host: bool = False, skip_accept_encoding: bool = False) -> None:
        super().putrequest(method, url, skip_host, skip_accept_encoding)
        if self._token is not None:
            self.putheader("Authorization", f"Bearer {self._token}")
