"""API errors rendered as real ``Status`` bodies.

Shapes follow k8s.io/apimachinery/pkg/api/errors/errors.go and metav1.Status
(kubernetes.io/docs/reference/kubernetes-api/common-definitions/status/): ``kind: Status``, ``status: Failure``,
a human ``message``, a machine ``reason``, ``details`` naming the object, and the HTTP ``code``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# resource -> (API group, Kind) for the resources the emulator serves.
GROUPS: dict[str, tuple[str, str]] = {
    "jobs": ("batch", "Job"),
    "pods": ("", "Pod"),
    "namespaces": ("", "Namespace"),
    "events": ("", "Event"),
    "leases": ("coordination.k8s.io", "Lease"),
    "secrets": ("", "Secret"),
}


def qualified(resource: str) -> str:
    """``jobs.batch`` / ``pods``: how apiserver messages name a resource (GroupResource.String())."""
    group = GROUPS.get(resource.split("/")[0], ("", ""))[0]
    return f"{resource}.{group}" if group else resource


@dataclass
class Cause:
    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def as_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}

    def text(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass
class ApiError(Exception):
    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            out["details"] = self.details
        return out


def _details(resource: str, name: str | None) -> dict[str, Any]:
    group = GROUPS.get(resource.split("/")[0], ("", ""))[0]
    d: dict[str, Any] = {"kind": resource}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    return d


def not_found(resource: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(resource)} "{name}" not found', _details(resource, name))


def already_exists(resource: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{qualified(resource)} "{name}" already exists', _details(resource, name))


def conflict(resource: str, name: str) -> ApiError:
    # errors.NewConflict with the optimistic-concurrency message of the generic registry store.
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource)} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        _details(resource, name),
    )


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> ApiError:
    # errors.NewInvalid: one cause is inlined, several are bracketed.
    texts = [c.text() for c in causes]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    qual = f"{kind}.{group}" if group else kind
    details: dict[str, Any] = {"name": name, "kind": kind, "causes": [c.as_dict() for c in causes]}
    if group:
        details["group"] = group
    return ApiError(422, "Invalid", f'{qual} "{name}" is invalid: {joined}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(method: str) -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", f"the server does not allow this method on the requested resource ({method})"
    )


def forbidden(user: str, verb: str, resource: str, namespace: str | None, name: str | None) -> ApiError:
    # The RBAC authorizer's wording (k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go).
    base = resource.split("/")[0]
    group = GROUPS.get(base, ("", ""))[0]
    subject = qualified(base)  # RBAC names the group-resource; the subresource appears only as the resource
    if name:
        subject += f' "{name}"'
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    msg = f'{subject} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API group "{group}" {scope}'
    return ApiError(403, "Forbidden", msg, _details(resource, name))


def injected(status: int, retry_after: int | None) -> ApiError:
    if status == 429:
        secs = 1 if retry_after is None else retry_after
        return ApiError(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
            {"retryAfterSeconds": secs},
            {"Retry-After": str(secs)},
        )
    if status == 503:
        hdr = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return ApiError(503, "ServiceUnavailable", "the server is currently unable to handle the request", None, hdr)
    if status == 504:
        return ApiError(504, "Timeout", "the server was unable to return a response in the time allotted")
    return ApiError(status, "InternalError", "Internal error occurred: injected fault (kannon emulator)")


def expired(requested: int, oldest: int) -> dict[str, Any]:
    """The Status carried by a watch ERROR event for a compacted resourceVersion (410 Gone / Expired)."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"too old resource version: {requested} ({oldest})",
        "reason": "Expired",
        "code": 410,
    }
