"""The child-result record: one versioned JSON document through which a child reports an attempt to the master.

Written by the child (kannon.child) just before it exits, on success and on failure; read by each backend into
``Finished.result``. Local and Docker: a file under ``<run_dir>/results/<invocation_id>/``; Kubernetes: the main
container's termination message (``terminationMessagePath``), which the kubelet caps at 4096 bytes. The path the
child writes to is in ``KANNON_RESULT_PATH``.

It carries task references, hashes and figures, never parameter values (they can be large or secret; the master
has them): no field can hold one. A reader ignores keys it does not know; a record of another ``kannon_result``
version, or anything that is not a record, parses to None and the master falls back to the exit code.

Too long for its place (``to_json(r, max_bytes=...)``, 4096 on Kubernetes): the ``requested`` list is cut from its
end until the record fits, then ``usage`` is dropped, and ``"truncated": true`` says so (``ChildResult.truncated``),
so the master knows the list it holds is incomplete instead of losing the whole record.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

RESULT_VERSION = 1
RESULT_PATH_ENV = "KANNON_RESULT_PATH"  # where the child writes its record (a file; on Kubernetes the container's
# terminationMessagePath)
TERMINATION_MESSAGE_MAX = 4096  # bytes the kubelet keeps of a termination message (upstream: 4096 per container)

PEAK_SOURCES = ("cgroup-v2", "cgroup-v1", "rusage", "oom-limit")


class _LaunchLike(Protocol):  # kannon.backends.base.Launch, without importing the backends here
    @property
    def task_id(self) -> str: ...
    @property
    def attempt(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Usage:
    """What one attempt really used."""

    peak_rss_bytes: int | None
    peak_source: str  # "cgroup-v2" | "cgroup-v1" | "rusage"
    cpu_seconds: float
    wall_seconds: float
    output_bytes: int
    oom_limit_bytes: int | None = None  # set when the attempt was OOM-killed


@dataclass(frozen=True)
class Requested:
    """A dynamic dependency a child's run() yielded (issue 13)."""

    task: str
    spec_sha256: str


@dataclass(frozen=True)
class ChildResult:
    task: str
    spec_sha256: str
    attempt: int
    outcome: str  # "ok" or a failure class (kannon.exitcodes.CLASS)
    exit_code: int
    usage: Usage | None = None
    requested: tuple[Requested, ...] = ()
    truncated: bool = False  # `requested` (and maybe `usage`) were cut so the record fits its place


def _doc(r: ChildResult) -> dict[str, Any]:
    doc: dict[str, Any] = {"kannon_result": RESULT_VERSION, "task": r.task, "spec_sha256": r.spec_sha256,
                           "attempt": r.attempt, "outcome": r.outcome, "exit_code": r.exit_code}  # fmt: skip
    if r.usage is not None:
        u = r.usage
        doc["usage"] = {"peak_rss_bytes": u.peak_rss_bytes, "peak_source": u.peak_source,
                        "cpu_seconds": round(u.cpu_seconds, 3), "wall_seconds": round(u.wall_seconds, 3),
                        "output_bytes": u.output_bytes}  # fmt: skip
        if u.oom_limit_bytes is not None:
            doc["usage"]["oom_limit_bytes"] = u.oom_limit_bytes
    if r.requested:
        doc["requested"] = [{"task": q.task, "spec_sha256": q.spec_sha256} for q in r.requested]
    if r.truncated:
        doc["truncated"] = True
    return doc


def _dumps(r: ChildResult) -> str:
    return json.dumps(_doc(r), separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def to_json(r: ChildResult, max_bytes: int | None = None) -> str:
    """The record as one line of ASCII JSON; with ``max_bytes``, cut to fit (see the module doc)."""
    text = _dumps(r)
    if max_bytes is None or len(text) <= max_bytes:
        return text
    keep = list(r.requested)
    lo, hi = 0, len(keep)  # the longest prefix of `requested` that fits (binary search: each dump is O(n))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(_dumps(replace(r, requested=tuple(keep[:mid]), truncated=True))) <= max_bytes:
            lo = mid
        else:
            hi = mid - 1
    cut = replace(r, requested=tuple(keep[:lo]), truncated=True)
    if len(_dumps(cut)) > max_bytes:
        cut = replace(cut, usage=None)
    return _dumps(cut)  # may still exceed max_bytes only for an absurdly long task id; the reader then gets None


def _int(v: object, optional: bool = False) -> int | None:
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(v)
    return v


def _num(v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(v)
    return float(v)


def _str(v: object) -> str:
    if not isinstance(v, str):
        raise ValueError(v)
    return v


def _usage(d: object) -> Usage:
    if not isinstance(d, dict):
        raise ValueError(d)
    # interned: one of three words, otherwise a copy in each of 10,000 records
    return Usage(peak_rss_bytes=_int(d.get("peak_rss_bytes"), optional=True),
                 peak_source=sys.intern(_str(d["peak_source"])),
                 cpu_seconds=_num(d["cpu_seconds"]), wall_seconds=_num(d["wall_seconds"]),
                 output_bytes=_int(d["output_bytes"]) or 0,
                 oom_limit_bytes=_int(d.get("oom_limit_bytes"), optional=True))  # fmt: skip


def parse(text: str | bytes) -> ChildResult | None:
    """The record in ``text``, or None: not JSON, not a record, another version, or a field of the wrong type."""
    try:
        doc = json.loads(text)
        version = doc.get("kannon_result") if isinstance(doc, dict) else None
        if isinstance(version, bool) or version != RESULT_VERSION:  # True == 1 in Python: not a version
            return None
        requested = doc.get("requested", [])
        if not isinstance(requested, list) or not all(isinstance(q, dict) for q in requested):
            return None
        attempt, exit_code = _int(doc["attempt"]), _int(doc["exit_code"])
        assert attempt is not None and exit_code is not None
        return ChildResult(
            task=_str(doc["task"]), spec_sha256=_str(doc["spec_sha256"]), attempt=attempt,
            outcome=_str(doc["outcome"]), exit_code=exit_code,
            usage=None if doc.get("usage") is None else _usage(doc["usage"]),
            requested=tuple(Requested(task=_str(q["task"]), spec_sha256=_str(q["spec_sha256"])) for q in requested),
            truncated=doc.get("truncated") is True,
        )  # fmt: skip
    except (ValueError, KeyError, TypeError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


def read(path: str | os.PathLike[str]) -> ChildResult | None:
    """The record in the file at ``path``, or None when there is none (never written, unreadable, not a record)."""
    try:
        with open(path, "rb") as f:
            return parse(f.read(64 * 1024))
    except OSError:
        return None


def result_file(run_dir: str | os.PathLike[str], invocation_id: str, launch: _LaunchLike) -> Path:
    """Where a local or Docker child writes its record: ``<run_dir>/results/<invocation_id>/<task>-<attempt>.json``."""
    return Path(run_dir) / "results" / (invocation_id or "_") / f"{launch.task_id}-{launch.attempt}.json"


def parse_for(text: str | bytes, launch: _LaunchLike) -> ChildResult | None:
    """The record in ``text`` if it is this launch's (same task and attempt), else None."""
    record = parse(text)
    if record is None or record.task != launch.task_id or record.attempt != launch.attempt:
        return None
    return record


def read_for(path: str | os.PathLike[str], launch: _LaunchLike) -> ChildResult | None:
    """The record in the file at ``path`` if it is this launch's (same task and attempt), else None."""
    try:
        with open(path, "rb") as f:
            return parse_for(f.read(64 * 1024), launch)
    except OSError:
        return None


def write_atomic(path: str | os.PathLike[str], r: ChildResult, max_bytes: int | None = None) -> None:
    """Write the record so a reader sees all of it or nothing: a temporary file in the same directory, renamed.

    The directory is created if missing. Where the rename cannot work — a Kubernetes terminationMessagePath is a
    file the kubelet bind-mounts into the container, which cannot be replaced, in a directory (``/dev``) we may
    not write to — the record is written in place; nobody reads that file before the container has exited."""
    text = to_json(r, max_bytes).encode("ascii")
    target = os.fspath(path)
    parent = os.path.dirname(target) or "."
    tmp = os.path.join(parent, f".{os.path.basename(target)}.{os.getpid()}.tmp")
    try:
        os.makedirs(parent, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(text)
        os.replace(tmp, target)
        return
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    with open(target, "wb") as f:  # in place (see above); an OSError here is the caller's to report
        f.write(text)


__all__ = [
    "PEAK_SOURCES",
    "RESULT_PATH_ENV",
    "RESULT_VERSION",
    "TERMINATION_MESSAGE_MAX",
    "ChildResult",
    "Requested",
    "Usage",
    "parse",
    "parse_for",
    "read",
    "read_for",
    "result_file",
    "to_json",
    "write_atomic",
]
