"""Server-side Table output (``Accept: application/json;as=Table;g=meta.k8s.io;v=v1``), what ``kubectl get`` prints.

Columns and cells follow upstream's printers (pkg/printers/internalversion/printers.go: printJob, printPod, printLease,
printNamespace; the default table convertor for the rest) and k8s.io/apimachinery/pkg/util/duration.HumanDuration;
the shape is meta.k8s.io/v1 Table (kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables).
Rows carry a PartialObjectMetadata (the server's default ``includeObject=Metadata``) or the object
(``includeObject=Object``).
"""

from __future__ import annotations

import time
from typing import Any

from kannon.testing.kube.store import parse_iso

Obj = dict[str, Any]


def wants_table(accept: str | None) -> bool:
    """True when the client's first acceptable media type is a meta.k8s.io/v1 Table (kubectl lists v1 first)."""
    for media in (accept or "").split(","):
        params = {p.split("=", 1)[0].strip(): p.split("=", 1)[-1].strip() for p in media.split(";")[1:] if "=" in p}
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") == "v1":
            return True
    return False


def human_duration(seconds: float) -> str:
    """duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _age(stamp: str | None) -> str:
    return human_duration(time.time() - parse_iso(stamp)) if stamp else "<unknown>"


def _col(name: str, typ: str, desc: str, priority: int = 0, fmt: str = "") -> Obj:
    return {"name": name, "type": typ, "format": fmt, "description": desc, "priority": priority}


_NAME = _col("Name", "string", "Name must be unique within a namespace.", fmt="name")
_AGE = _col("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was "
            "created.")

JOB_COLUMNS = [
    _NAME,
    _col("Status", "string", "Status of the job."),
    _col("Completions", "string", "The completion status of the job."),
    _col("Duration", "string", "Time required to complete the job."),
    _AGE,
    _col("Containers", "string", "Names of each container in the template.", 1),
    _col("Images", "string", "Images referenced by each container in the template.", 1),
    _col("Selector", "string", "A label query over pods that should match the pod count.", 1),
]

POD_COLUMNS = [
    _NAME,
    _col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    _col("Status", "string", "The aggregate status of the containers in this pod."),
    _col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the "
         "last container in this pod has restarted."),
    _AGE,
    _col("IP", "string", "IP address allocated to the pod. Routable at least within the cluster.", 1),
    _col("Node", "string", "Name of the node where the pod is scheduled.", 1),
    _col("Nominated Node", "string", "Name of the node where the pod is nominated to be scheduled.", 1),
    _col("Readiness Gates", "string", "Readiness gates of the pod.", 1),
]

LEASE_COLUMNS = [_NAME, _col("Holder", "string", "The holder of the lease."), _AGE]
NAMESPACE_COLUMNS = [_NAME, _col("Status", "string", "The status of the namespace"), _AGE]
DEFAULT_COLUMNS = [_NAME, _col("Created At", "date", "CreationTimestamp of the object.")]


def _has(obj: Obj, ctype: str) -> bool:
    return any(
        c.get("type") == ctype and c.get("status") == "True" for c in (obj.get("status") or {}).get("conditions") or []
    )


def job_cells(job: Obj) -> list[Any]:
    spec, st, meta = job.get("spec") or {}, job.get("status") or {}, job["metadata"]
    if _has(job, "Complete"):
        status = "Complete"
    elif _has(job, "Failed"):
        status = "Failed"
    elif meta.get("deletionTimestamp"):
        status = "Terminating"
    elif _has(job, "Suspended"):
        status = "Suspended"
    elif _has(job, "FailureTarget"):
        status = "FailureTarget"
    else:
        status = "Running"
    succeeded = st.get("succeeded") or 0
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 1) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    duration = ""
    if st.get("startTime"):
        end = parse_iso(st["completionTime"]) if st.get("completionTime") else time.time()
        duration = human_duration(end - parse_iso(st["startTime"]))
    containers = (spec.get("template") or {}).get("spec", {}).get("containers") or []
    selector = ",".join(f"{k}={v}" for k, v in sorted(((spec.get("selector") or {}).get("matchLabels") or {}).items()))
    return [
        meta["name"], status, completions, duration, _age(meta.get("creationTimestamp")),
        ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers), selector,
    ]


def pod_cells(pod: Obj) -> list[Any]:
    spec, st, meta = pod.get("spec") or {}, pod.get("status") or {}, pod["metadata"]
    statuses = st.get("containerStatuses") or []
    reason = st.get("reason") or st.get("phase") or ""
    ready = restarts = 0
    last_restart: str | None = None
    running = False
    for cs in reversed(statuses):
        restarts += cs.get("restartCount", 0)
        term = (cs.get("lastState") or {}).get("terminated") or {}
        if term.get("finishedAt") and (last_restart is None or term["finishedAt"] > last_restart):
            last_restart = term["finishedAt"]
        state = cs.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated"):
            t = state["terminated"]
            reason = t.get("reason") or (
                f"Signal:{t['signal']}" if t.get("signal") else f"ExitCode:{t.get('exitCode', 0)}"
            )
        elif state.get("running") and cs.get("ready"):
            ready += 1
            running = True
    if running and reason == "Completed":
        reason = "Running"
    if meta.get("deletionTimestamp"):
        reason = "Unknown" if st.get("reason") == "NodeLost" else "Terminating"
    restart_cell = str(restarts) if last_restart is None else f"{restarts} ({_age(last_restart)} ago)"
    return [
        meta["name"], f"{ready}/{len(spec.get('containers') or [])}", reason, restart_cell,
        _age(meta.get("creationTimestamp")), st.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
        st.get("nominatedNodeName") or "<none>", "<none>",
    ]


def table(resource: str, items: list[Obj], rv: str | None, include: str | None, api_version: str, kind: str) -> Obj:
    columns, cells = {
        "jobs": (JOB_COLUMNS, job_cells),
        "pods": (POD_COLUMNS, pod_cells),
        "leases": (LEASE_COLUMNS, lambda o: [o["metadata"]["name"], (o.get("spec") or {}).get("holderIdentity") or "",
                                             _age(o["metadata"].get("creationTimestamp"))]),
        "namespaces": (NAMESPACE_COLUMNS, lambda o: [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""),
                                                     _age(o["metadata"].get("creationTimestamp"))]),
    }.get(resource, (DEFAULT_COLUMNS, lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp")]))
    rows = []
    for obj in items:
        if include == "None":
            row_obj: Obj | None = None
        elif include == "Object":
            row_obj = {**obj, "apiVersion": api_version, "kind": kind}
        else:
            row_obj = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
        rows.append({"cells": cells(obj), "object": row_obj})
    meta = {"resourceVersion": rv} if rv else {}
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": columns,
            "rows": rows}


__all__ = ["human_duration", "job_cells", "pod_cells", "table", "wants_table"]
