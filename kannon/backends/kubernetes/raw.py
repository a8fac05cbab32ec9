"""Read-only views of the API's JSON Jobs and pods, with the client models' snake_case attribute names.

The watches deliver ~10 events per task; turning each into the official client's typed models
(``ApiClient.deserialize``) walked every field and parsed every timestamp with dateutil, and cost the master more
CPU than anything else it does (docs/benchmarks.md, "Where the master's CPU goes"). These views wrap the decoded
dict instead and read a field only when the tracker asks for it: ``pod.status.container_statuses[0].state`` is
three dict lookups, a timestamp is parsed only when read. They answer what the client's ``V1Job`` / ``V1Pod`` answer
for the fields kannon reads (a missing field is None; strings, ints and datetimes as the client converts them), so
the classification code takes either: watch events, lists and reads by name arrive as views, a few paths (a create's
answer, the master's own pod) still hold client models.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")
_FRACTION = re.compile(r"\.(\d+)")


class View:
    """One JSON object of the API (camelCase keys, as the API server sends it)."""

    __slots__ = ("raw",)

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self.raw)!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and isinstance(other, View) and other.raw == self.raw


class _Field(Generic[T]):
    """The attribute for one key: None when the key is absent or null, else the value through ``convert``."""

    __slots__ = ("convert", "key")

    def __init__(self, key: str, convert: Callable[[Any], T]) -> None:
        self.key, self.convert = key, convert

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> _Field[T]: ...

    @overload
    def __get__(self, obj: View, owner: type[Any]) -> T | None: ...

    def __get__(self, obj: View | None, owner: type[Any]) -> _Field[T] | T | None:
        if obj is None:
            return self
        value = obj.raw.get(self.key)
        return None if value is None else self.convert(value)


def parse_time(value: str) -> datetime.datetime:
    """An RFC 3339 timestamp (``2026-12-04T17:53:53Z``, or MicroTime's ``...53.123456Z``), timezone-aware as the
    client's dateutil parse gives it. Python 3.10's ``fromisoformat`` takes neither "Z" nor other than 3 or 6
    fractional digits: both are normalised first."""
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    if "." in text:
        text = _FRACTION.sub(lambda m: "." + (m.group(1) + "00000")[:6], text, count=1)
    return datetime.datetime.fromisoformat(text)


def _text(key: str) -> _Field[str]:
    return _Field(key, str)


def _int(key: str) -> _Field[int]:
    return _Field(key, int)


def _flag(key: str) -> _Field[bool]:
    return _Field(key, bool)


def _time(key: str) -> _Field[datetime.datetime]:
    return _Field(key, parse_time)


def _strings(key: str) -> _Field[dict[str, str]]:
    # label, annotation and resource-quantity maps: strings already (the client converts each value with str too)
    return _Field(key, lambda value: {k: str(v) for k, v in value.items()})


def _one(key: str, cls: Callable[[Any], T]) -> _Field[T]:
    return _Field(key, cls)


def _many(key: str, cls: Callable[[Any], T]) -> _Field[list[T]]:
    return _Field(key, lambda value: [cls(item) for item in value])


class OwnerReference(View):
    __slots__ = ()
    kind, name, uid = _text("kind"), _text("name"), _text("uid")
    controller = _flag("controller")


class ObjectMeta(View):
    __slots__ = ()
    name, namespace, uid = _text("name"), _text("namespace"), _text("uid")
    resource_version = _text("resourceVersion")
    labels, annotations = _strings("labels"), _strings("annotations")
    owner_references = _many("ownerReferences", OwnerReference)
    finalizers = _Field("finalizers", lambda value: [str(v) for v in value])
    creation_timestamp, deletion_timestamp = _time("creationTimestamp"), _time("deletionTimestamp")


class Condition(View):
    """A Job's or a pod's condition (``status`` is the string "True", "False" or "Unknown")."""

    __slots__ = ()
    type, status, reason, message = _text("type"), _text("status"), _text("reason"), _text("message")
    last_transition_time = _time("lastTransitionTime")


class JobSpec(View):
    __slots__ = ()
    active_deadline_seconds, backoff_limit = _int("activeDeadlineSeconds"), _int("backoffLimit")
    suspend = _flag("suspend")


class JobStatus(View):
    __slots__ = ()
    conditions = _many("conditions", Condition)
    active, succeeded, failed = _int("active"), _int("succeeded"), _int("failed")
    start_time, completion_time = _time("startTime"), _time("completionTime")


class _Object(View):
    """A whole object: the API server always sends its ``metadata``, so this attribute is never None."""

    __slots__ = ()

    @property
    def metadata(self) -> ObjectMeta:
        return ObjectMeta(self.raw.get("metadata") or {})


class Job(_Object):
    __slots__ = ()
    spec = _one("spec", JobSpec)
    status = _one("status", JobStatus)


class ResourceRequirements(View):
    __slots__ = ()
    limits, requests = _strings("limits"), _strings("requests")


class Container(View):
    __slots__ = ()
    name, image, restart_policy = _text("name"), _text("image"), _text("restartPolicy")
    resources = _one("resources", ResourceRequirements)


class PodSpec(View):
    __slots__ = ()
    containers, init_containers = _many("containers", Container), _many("initContainers", Container)
    node_name = _text("nodeName")


class StateRunning(View):
    __slots__ = ()
    started_at = _time("startedAt")


class StateTerminated(View):
    __slots__ = ()
    exit_code, signal = _int("exitCode"), _int("signal")
    reason, message = _text("reason"), _text("message")
    started_at, finished_at = _time("startedAt"), _time("finishedAt")


class StateWaiting(View):
    __slots__ = ()
    reason, message = _text("reason"), _text("message")


class ContainerState(View):
    __slots__ = ()
    running = _one("running", StateRunning)
    terminated = _one("terminated", StateTerminated)
    waiting = _one("waiting", StateWaiting)


class ContainerStatus(View):
    __slots__ = ()
    name, image = _text("name"), _text("image")
    state, last_state = _one("state", ContainerState), _one("lastState", ContainerState)
    restart_count, ready = _int("restartCount"), _flag("ready")


class PodStatus(View):
    __slots__ = ()
    phase, reason, message = _text("phase"), _text("reason"), _text("message")
    conditions = _many("conditions", Condition)
    container_statuses = _many("containerStatuses", ContainerStatus)
    init_container_statuses = _many("initContainerStatuses", ContainerStatus)
    start_time = _time("startTime")


class Pod(_Object):
    __slots__ = ()
    spec = _one("spec", PodSpec)
    status = _one("status", PodStatus)


def read_json(resp: Any) -> dict[str, Any]:
    """The body of a response read with ``_preload_content=False`` (the client then skips its deserialisation)."""
    try:
        data = resp.data
    finally:
        resp.release_conn()
    body = json.loads(data)
    if not isinstance(body, dict):
        raise ValueError(f"the API server answered {type(body).__name__}, not an object")
    return body


def as_json(fn: Callable[..., Any]) -> Callable[..., dict[str, Any]]:
    """Client API method ``fn`` answering its decoded JSON body instead of a model. Pass this to ``ApiCaller.call``,
    so that a connection lost while the body is read is retried as one lost before the answer would be."""

    def call(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return read_json(fn(*args, _preload_content=False, **kwargs))

    return call


def list_items(body: Mapping[str, Any], cls: Callable[[Mapping[str, Any]], T]) -> tuple[str | None, list[T]]:
    """A list's ``metadata.resourceVersion`` and its items as views."""
    rv = (body.get("metadata") or {}).get("resourceVersion")
    return (None if rv is None else str(rv)), [cls(item) for item in body.get("items") or ()]
