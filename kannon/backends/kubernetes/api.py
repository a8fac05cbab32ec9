"""The one place that talks to the API server: the client and namespace, a client-side rate limit, and
:class:`ApiCaller`, which retries with tenacity (429/5xx/resets, Retry-After honoured) and turns 401/403 and an
API server that stays away into a :class:`BackendError` that says what to do."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from kannon.backends.base import BackendError
from kannon.backends.kubernetes.manifest import SERVICEACCOUNT_DIR

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger("kannon.kubernetes")
T = TypeVar("T")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
SERVER_FAILING = RETRYABLE_STATUS - {429}  # the server answers, but not with what was asked: "away" if it lasts

class TokenBucket:
    """Client-side rate limit: ``rate`` requests/s on average, bursts up to ``burst``. Thread-safe."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:  # fmt: skip
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst = float(rate), int(burst)
        self._clock, self._sleep = clock, sleep
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take one token, waiting as long as needed; returns the time waited. The token is reserved at the call
        (the balance may go below zero), so each caller sleeps once, for its own turn: concurrent waiters neither
        wake each other to race for one token (a pool of waiting threads did, ~16 wake-ups per request) nor
        overtake one another."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate) - 1
            self._last = now
            # tolerance: float refill math must not make a caller wait for 0.0000001 of a token
            wait = -self._tokens / self.rate if self._tokens < -1e-9 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait

def api_status(e: BaseException) -> tuple[str, str]:
    """``(reason, message)`` from an ApiException's Status body."""
    body = getattr(e, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        data = json.loads(body) if body else {}
    except (TypeError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    return str(data.get("reason") or getattr(e, "reason", "") or ""), str(data.get("message") or "")

def _retry_after(e: BaseException) -> float | None:
    headers = getattr(e, "headers", None)
    if not headers:
        return None
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None

def retryable(e: BaseException) -> bool:
    from kubernetes.client.rest import ApiException

    if isinstance(e, ApiException):
        return e.status in RETRYABLE_STATUS
    import urllib3.exceptions

    return isinstance(e, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))

class ApiCaller:
    """Retries (429, 5xx, connection resets; Retry-After honoured) and rate limiting for every API call.

    ``call(verb, resource, fn, *args, **kwargs)``: the verb/resource pair names the permission in the 403 message.
    """

    def __init__(self, namespace: str, qps: float = 20.0, burst: int = 40, attempts: int = 8,
                 max_delay: float = 60.0, backoff: float = 0.2, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.namespace = namespace
        self.bucket = TokenBucket(qps, burst, clock=clock, sleep=sleep)
        self._sleep = sleep
        self.attempts, self.max_delay, self.backoff = attempts, max_delay, backoff
        self._clock = clock
        self.calls = 0
        self.retries = 0
        # When a call spent its whole retry window without the API server answering (unreachable, or 5xx), until
        # a call gets through: later calls try once. Cleanup after the server went away (a delete per running Job)
        # would otherwise spend the window once per call, minutes per dozen Jobs, a SIGTERM's included.
        self._away_since: float | None = None

    def _wait(self, state: Any) -> float:
        import tenacity

        exc = state.outcome.exception() if state.outcome else None
        expo = tenacity.wait_random_exponential(multiplier=self.backoff, max=10.0)(state)
        after = _retry_after(exc) if exc is not None else None
        return min(30.0, max(expo, after)) if after is not None else float(expo)

    def call(self, verb: str, resource: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        import tenacity

        from kubernetes.client.rest import ApiException

        away = self._away_since
        attempts = 1 if away is not None else self.attempts
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(retryable),
            wait=self._wait,
            stop=tenacity.stop_after_attempt(attempts) | tenacity.stop_after_delay(self.max_delay),
            reraise=True,
            before_sleep=self._note_retry,
            sleep=self._sleep,
        )
        try:
            for attempt in retrying:
                with attempt:
                    self.bucket.take()
                    self.calls += 1
                    result = fn(*args, **kwargs)
                    self._away_since = None
                    return result
        except Exception as e:
            if isinstance(e, ApiException) and e.status not in SERVER_FAILING:
                self._away_since = None  # it answered (a 404, a 409, a 429 "slow down"): not away
            elif retryable(e):  # unreachable or 5xx for the whole retry window, or for the one try while away
                if away is None:
                    self._away_since = self._clock()
                else:
                    what = getattr(e, "status", None) or type(e).__name__
                    raise BackendError(
                        f"the Kubernetes API is unreachable for the last {self._clock() - away:.0f} s (a call spent "
                        f"its {self.attempts} attempts without an answer); {verb} {resource} was tried once: "
                        f"{what}: {api_status(e)[1] or e}") from e  # fmt: skip
            self._raise(verb, resource, e)
        raise AssertionError("unreachable")  # pragma: no cover - Retrying either returns or raises

    def _raise(self, verb: str, resource: str, e: Exception) -> NoReturn:
        """The error a call that failed for good raises: a BackendError naming what to do, or ``e`` itself."""
        from kubernetes.client.rest import ApiException

        if isinstance(e, ApiException):
            if e.status == 403:
                raise BackendError(self.forbidden(verb, resource, api_status(e)[1])) from e
            if e.status == 401:
                raise BackendError(f"the API server rejected kannon's credentials (401) on {verb} {resource}; "
                                   "check the kubeconfig / service account token") from e  # fmt: skip
            if e.status in RETRYABLE_STATUS:
                raise BackendError(f"the Kubernetes API kept failing on {verb} {resource} (HTTP {e.status}, "
                                   f"{self.attempts} attempts): {api_status(e)[1] or e.reason}") from e  # fmt: skip
            raise e
        if retryable(e):
            raise BackendError(f"cannot reach the Kubernetes API for {verb} {resource} after {self.attempts} "
                               f"attempts: {type(e).__name__}: {e}") from e  # fmt: skip
        raise e

    def _note_retry(self, state: Any) -> None:
        self.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.info("Kubernetes API call failed (%s); retry %d", getattr(exc, "status", None) or type(exc).__name__,
                 state.attempt_number)  # fmt: skip

    def forbidden(self, verb: str, resource: str, message: str = "") -> str:
        said = f" (API server: {message})" if message else ""
        return (f"permission denied: kannon's service account may not {verb} {resource} in namespace "
                f"{self.namespace!r}{said}. Grant what the backend needs with `kannon k8s rbac --namespace "
                f"{self.namespace} --service-account <name> | kubectl apply -f -`")  # fmt: skip

def in_cluster_env() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SERVICEACCOUNT_DIR / "token").is_file()

def make_client(api_client: ApiClient | None, in_cluster: bool | None) -> tuple[ApiClient, bool]:
    """The API client: the one given, else in-cluster config, else the kubeconfig (``KUBECONFIG``)."""
    from kubernetes import client, config

    if api_client is not None:
        return api_client, bool(in_cluster)
    if in_cluster is not False and in_cluster_env():
        cfg = client.Configuration()
        config.load_incluster_config(client_configuration=cfg)
        cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize, 32)
        return client.ApiClient(cfg), True
    cfg = client.Configuration()
    try:
        # KUBECONFIG read now: the client reads it once at import time
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None, client_configuration=cfg)
    except Exception as e:  # ConfigException, a missing file, a malformed one
        raise BackendError(
            "no Kubernetes API to talk to: not inside a cluster, and no usable kubeconfig "
            f"({type(e).__name__}: {e}). Set KUBECONFIG, or pass api_client=kubernetes.client.ApiClient(...)"
        ) from e
    cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize, 32)
    return client.ApiClient(cfg), False

def default_namespace(template: Mapping[str, Any] | None, in_cluster: bool) -> str:
    """Namespace: template > in-cluster namespace file > kubeconfig context > "default" (the argument wins first)."""
    ns = ((template or {}).get("metadata") or {}).get("namespace")
    if ns:
        return str(ns)
    if in_cluster:
        with contextlib.suppress(OSError):
            text = (SERVICEACCOUNT_DIR / "namespace").read_text().strip()
            if text:
                return text
    try:
        from kubernetes import config

        _, active = config.list_kube_config_contexts(config_file=os.environ.get("KUBECONFIG") or None)
        ns = (active or {}).get("context", {}).get("namespace")
    except Exception:  # no kubeconfig: fine when an api_client was given
        ns = None
    return str(ns) if ns else "default"

