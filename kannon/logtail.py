"""What a failed task's log shows in one screen: the exception, the user's frames, then the task's last own output.

A raw tail of a failed bullet's log is mostly gokart/luigi worker frames and gokart's FAILURE banner, and the
task's own prints just before the exception are cut off. :func:`shape` reorders and trims it:

1. the exception line (``ValueError: ...``), then the traceback's frames: frames from the user's code as Python
   prints them, each run of library frames (luigi, gokart, kannon, the standard library, site-packages) folded into
   one line;
2. the task's last own output lines before the failure (kannon/luigi/gokart log records dropped).

gokart's FAILURE banner and kannon's ``kannon-child:`` line (the same words as the reason shown next to the tail)
are dropped. Every place that shows a tail uses it: the backends' ``Finished.log_tail``, the summary,
``KannonBuildError`` and the report. Idempotent: shaping a shaped tail changes nothing. The full log stays in the
run directory, capped (:class:`CappedLog`), and is found again by :func:`find_logs` / ``kannon logs``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import re
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kannon import cliutil, exitcodes

#: the child's own log records: "2026-12-03 12:15:09,885 ERROR gokart.worker: ..." (kannon.child._setup_logging)
_LIB_LOG = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ (luigi|gokart|kannon)[\w.-]*: ")
_FILE = re.compile(r'^  File "(?P<path>[^"]+)", line (?P<line>\d+), in (?P<func>.+)$')
_FOLDED = re.compile(r"^  \.\.\. \d+ library frames? \(")
_BANNER_FIELD = re.compile(r"^    (task name|unique id|parameters)=")
_CHAIN = ("During handling of the above exception", "The above exception was the direct cause")
OUTPUT_HEADER = "last output before the failure:"
_LIB_PACKAGES = ("luigi", "gokart", "kannon")


@functools.cache
def _library_dirs() -> tuple[tuple[str, str], ...]:
    """(directory prefix, library name): where luigi, gokart and kannon are installed, and the standard library."""
    dirs = []
    for name in _LIB_PACKAGES:
        with contextlib.suppress(ImportError, ValueError):
            spec = importlib.util.find_spec(name)
            for location in (spec.submodule_search_locations or []) if spec else []:
                dirs.append((str(Path(location)) + "/", name))
    std = sysconfig.get_paths().get("stdlib")
    if std:
        dirs.append((str(Path(std)) + "/", ""))
    return tuple(dirs)


def _library(path: str) -> str | None:
    """The library a frame's file belongs to, or None for the user's own code."""
    parts = Path(path).parts
    for i, part in enumerate(parts):
        if part in ("site-packages", "dist-packages") and i + 1 < len(parts):
            return parts[i + 1].removesuffix(".py")
    if path.startswith("<frozen "):
        return path[len("<frozen ") :].rstrip(">").split(".")[0]
    for prefix, name in _library_dirs():
        if path.startswith(prefix):
            return name or Path(path[len(prefix) :]).parts[0].removesuffix(".py")
    return None


def _is_noise(line: str) -> bool:
    return (bool(_LIB_LOG.match(line)) or line.startswith((exitcodes.REASON_PREFIX, STATUS_PREFIX))
            or bool(_BANNER_FIELD.match(line)))  # fmt: skip


# -- status lines: a bullet's set_status_message / set_progress_percentage ------------------------------------
#: a child's output line with this prefix carries one status update as JSON {"message"?, "percentage"?}. The
#: output stream is the one channel every backend already carries (log file, Docker logs, pod logs), so the
#: core recognises these lines wherever child output arrives, reports them as "status" events and never shows
#: them as output. Must start the line: a task's own print cannot forge one by accident.
STATUS_PREFIX = "kannon-child-status: "
STATUS_MAX_MESSAGE = 2000  # characters: a status is a line on a screen, not a payload


@dataclass(frozen=True)
class ChildStatus:
    message: str | None = None
    percentage: float | None = None


def status_line(message: object = None, percentage: object = None) -> str:
    """The marked line for one update (what is None is not part of it)."""
    import json

    doc: dict[str, Any] = {}
    if message is not None:
        doc["message"] = str(message)[:STATUS_MAX_MESSAGE]
    if percentage is not None:
        doc["percentage"] = percentage
    return STATUS_PREFIX + json.dumps(doc, ensure_ascii=True, default=str)


def parse_status(line: str) -> ChildStatus | None:
    """The update a marked line carries; None for any other line (a malformed marked line is ordinary output)."""
    if not line.startswith(STATUS_PREFIX):
        return None
    import json

    try:
        doc = json.loads(line[len(STATUS_PREFIX) :])
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    message, pct = doc.get("message"), doc.get("percentage")
    try:
        percentage = None if pct is None else float(pct)
    except (TypeError, ValueError):
        percentage = None
    return ChildStatus(message if isinstance(message, str) else None, percentage)


def _frames(block: list[str]) -> list[str]:
    """Traceback body lines (after the header) with library frames folded; caret lines dropped."""
    out: list[str] = []
    run: list[str] = []  # libraries of the current run of library frames

    def flush() -> None:
        if run:
            names = ", ".join(dict.fromkeys(run))
            out.append(f"  ... {len(run)} library frame{'s' if len(run) > 1 else ''} ({names})")
            run.clear()

    lib: str | None = None
    for line in block:
        m = _FILE.match(line)
        if m:
            lib = _library(m.group("path"))
            if lib is None:
                flush()
                out.append(line)
            else:
                run.append(lib)
        elif line.startswith("    ") and lib is None and not set(line.strip()) <= set("^~ "):
            out.append(line)  # the user's source line
        elif _FOLDED.match(line):
            out.append(line)
    flush()
    return out


def shape(lines: Sequence[str], max_output: int = 8, max_lines: int = 20) -> tuple[str, ...]:
    """The shaped tail (see the module doc) of a log's last lines."""
    lines = [ln.rstrip("\n") for ln in lines]
    if OUTPUT_HEADER in lines:  # already shaped
        return tuple(lines[:max_lines])
    start = max((i for i, ln in enumerate(lines) if ln.startswith("Traceback (most recent call last):")), default=-1)
    if start < 0:
        own = [ln for ln in lines if not _is_noise(ln) and ln.strip() != "FAILURE:"]
        return tuple(own[-max_lines:])
    # the traceback body runs to the first line that is not indented: the exception, possibly over several lines
    end = start + 1
    while end < len(lines) and lines[end].startswith(" "):
        end += 1
    body = lines[start + 1 : end]
    exc: list[str] = []
    i = end
    while i < len(lines) and not _is_noise(lines[i]) and not lines[i].startswith(_CHAIN):
        exc.append(lines[i])
        i += 1
    # the task's own output is what precedes the failure: before the first traceback of a chain, and before the
    # log record that introduced it (gokart.worker's "... failed" line)
    first = start
    while first > 0 and any(lines[j].startswith(_CHAIN) for j in range(max(0, first - 2), first)):
        prev = max((j for j in range(first) if lines[j].startswith("Traceback (most recent call last):")), default=-1)
        if prev < 0:
            break
        first = prev
    before = [ln for ln in lines[:first] if not _is_noise(ln) and ln.strip() != "FAILURE:"]
    before = before[-max_output:]
    frames = _frames(body)
    room = max_lines - min(len(exc), 3) - (len(before) + 1 if before else 0)
    if len(frames) > room:  # the frames nearest the exception say the most
        frames = ["  ... (earlier frames in the full log)", *frames[len(frames) - room + 1 :]]
    out = [*exc[:3], *frames]
    if before:
        out += [OUTPUT_HEADER, *before]
    return tuple(out)


def last_lines(path: Path, max_bytes: int) -> list[str]:
    """The whole lines among the last ``max_bytes`` of a file ([] if it cannot be read)."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if size > max_bytes and lines:
        lines = lines[1:]  # the first line is probably cut
    return lines


def read_tail(path: Path, max_bytes: int = 128 * 1024) -> tuple[str, ...]:
    """The shaped tail of a log file (reads at most ``max_bytes`` from its end)."""
    return shape(last_lines(path, max_bytes))


# -- keeping full logs -----------------------------------------------------------------------------------------

def log_cap() -> int:
    """Bytes of an attempt's log kept in full (KANNON_LOG_CAP_BYTES, default 64 MiB); see docs/observability.md."""
    with contextlib.suppress(ValueError):
        return max(1024, int(os.environ.get("KANNON_LOG_CAP_BYTES", "")))
    return 64 << 20


class CappedLog:
    """An attempt's log file: the first ``log_cap()`` bytes, then only the last ``log_cap() // 4`` (where the
    failure is), with a line saying how much was dropped between them. Bounds the disk a chatty task can fill."""

    def __init__(self, log: Any) -> None:
        self.log, self.cap = log, log_cap()
        self.keep = self.cap // 4
        self.written = 0
        self.overflow = bytearray()
        self.dropped = 0

    def write(self, chunk: bytes) -> None:
        room = self.cap - self.written
        if room > 0:
            self.log.write(chunk[:room])
            self.log.flush()
            self.written += min(room, len(chunk))
            chunk = chunk[room:]
        if chunk:
            self.overflow += chunk
            if len(self.overflow) > self.keep:
                cut = len(self.overflow) - self.keep
                cut = self.overflow.find(b"\n", cut - 1) + 1 or cut  # at a line boundary where there is one
                self.dropped += cut
                del self.overflow[:cut]

    def close(self) -> None:
        if self.dropped:
            self.log.write(f"\n[kannon: log capped at {self.cap} bytes: {self.dropped} bytes dropped here; "
                           "the end of the output follows]\n".encode())  # fmt: skip
        self.log.write(self.overflow)
        self.log.close()


# -- finding full logs -------------------------------------------------------------------------------------------
_LOG_NAME = re.compile(r"^(?P<family>.+)-(?P<uid>[0-9a-f]{12})-(?P<attempt>\d+)\.log$")


def find_logs(run_dir: Path | str, family: str, task_id: str) -> dict[int, Path]:
    """attempt -> the newest full log of ``task_id`` under ``run_dir/logs`` (any invocation's subdirectory)."""
    found: dict[int, Path] = {}
    base = Path(run_dir) / "logs"
    for p in sorted(base.rglob(f"{family}-{task_id[:12]}-*.log"), key=lambda q: q.stat().st_mtime):
        m = _LOG_NAME.match(p.name)
        if m and m.group("family") == family:
            found[int(m.group("attempt"))] = p
    return found


def parse_log_name(name: str) -> tuple[str, str, int] | None:
    """(family, uid prefix, attempt) of a log file name, or None."""
    m = _LOG_NAME.match(name)
    return (m.group("family"), m.group("uid"), int(m.group("attempt"))) if m else None


@dataclass(frozen=True)
class RunLogs:
    """The logs of one build invocation: ``<run_dir>/logs/<invocation_id>/`` (or ``<run_dir>/logs/`` itself)."""

    run_id: str
    invocation_id: str
    directory: Path
    mtime: float

    def files(self) -> list[Path]:
        return sorted(p for p in self.directory.glob("*.log") if _LOG_NAME.match(p.name))


def run_logs(bases: Sequence[Path]) -> list[RunLogs]:
    """Every invocation's log directory under the ``runs`` directories ``bases``, oldest first."""
    found: list[RunLogs] = []
    for base in bases:
        for run_dir in base.glob("*/"):
            logs = run_dir / "logs"
            dirs = [d for d in logs.glob("*/") if d.is_dir()] if logs.is_dir() else []
            if logs.is_dir() and any(logs.glob("*.log")):
                dirs.append(logs)
            for d in dirs:
                mtimes = [p.stat().st_mtime for p in d.glob("*.log")]
                if mtimes:
                    inv = "" if d == logs else d.name
                    found.append(RunLogs(run_dir.name, inv, d, max(mtimes)))
    return sorted(found, key=lambda r: r.mtime)


def pick_run(runs: Sequence[RunLogs], which: str | None) -> RunLogs:
    """``which``: N-th (1-based, negative from the end; default the last) or a run/invocation id prefix."""
    if not runs:
        raise LookupError("no task logs found")
    if which is None:
        return runs[-1]

    def named(prefix: str) -> list[RunLogs]:
        return [r for r in runs if r.run_id.startswith(prefix) or r.invocation_id.startswith(prefix)]

    n = cliutil.position(which, lambda prefix: bool(named(prefix)))
    if n is not None:
        if n == 0 or abs(n) > len(runs):
            raise LookupError(f"--run {n}: there are {len(runs)} run(s) with logs")
        return runs[n - 1 if n > 0 else n]
    matches = named(which)
    if not matches:
        raise LookupError(f"no run with logs has an id starting with {which!r}")
    return matches[-1]


def pick_log(run: RunLogs, task: str, attempt: int | None) -> Path:
    """The log of ``task`` (a family name, a task id prefix, or ``Family[id prefix]``) in ``run``."""
    m = re.fullmatch(r"(?P<family>[^\[\]]+)\[(?P<uid>[0-9a-f]+)\]", task)
    family, uid = (m.group("family"), m.group("uid")) if m else (None, None)
    by_task: dict[tuple[str, str], dict[int, Path]] = {}
    for p in run.files():
        parsed = parse_log_name(p.name)
        assert parsed is not None
        fam, prefix, n = parsed
        hit = (fam == family and (prefix.startswith(uid or "") or (uid or "").startswith(prefix))) if m else (
            fam == task or (len(task) >= 4 and (prefix.startswith(task) or task.startswith(prefix))))
        if hit:
            by_task.setdefault((fam, prefix), {})[n] = p
    if not by_task:
        raise LookupError(f"no log of a task {task!r} in run {run.run_id} {run.invocation_id}".rstrip())
    if len(by_task) > 1:
        names = ", ".join(f"{f}[{u[:8]}]" for f, u in sorted(by_task))
        raise LookupError(f"{task!r} matches {len(by_task)} tasks ({names}); give the task id prefix")
    attempts = next(iter(by_task.values()))
    if attempt is None:
        return attempts[max(attempts)]
    if attempt not in attempts:
        have = ", ".join(map(str, sorted(attempts)))
        raise LookupError(f"no attempt {attempt} of {task!r}; attempts with logs: {have}")
    return attempts[attempt]


# -- a child whose interpreter cannot import kannon ---------------------------------------------------------------
_NO_KANNON = re.compile(r"No module named '?kannon'?\s*$")


def kannon_import_failure(lines: Sequence[str]) -> str | None:
    """The error line if the child's interpreter could not even import kannon (wrong interpreter or image), else
    None. ``python -m kannon`` then fails in runpy before kannon's own code runs, so no ``kannon-child:`` line."""
    if any(ln.startswith(exitcodes.REASON_PREFIX) for ln in lines):
        return None
    for ln in lines:
        if _NO_KANNON.search(ln):
            return ln.strip()
    if any('File "<frozen runpy>"' in ln for ln in lines):
        errors = [ln.strip() for ln in lines if ln.startswith(("ModuleNotFoundError:", "ImportError:"))]
        if errors:
            return errors[-1]
    return None


def kannon_import_reason(python: str, error: str, option: str) -> str:
    """The reason for such a failure, naming the setting to change (``--docker-python``, ``--k8s-python``, ...)."""
    return (f"the child's interpreter {python!r} cannot import kannon ({error}): point {option} at a Python that "
            "has kannon and the pipeline's packages installed, or install them where the child runs")


# -- masking (issue 12): the run's secret values never reach a console line, an event or a report ---------------
MASK = "***"
MIN_MASKED = 6  # shorter values would mask ordinary words and numbers everywhere; they are warned about instead


def maskable(secrets: Mapping[str, str]) -> tuple[str, ...]:
    """The values to mask, longest first (a value containing another is masked whole)."""
    return tuple(sorted({v for v in secrets.values() if len(v) >= MIN_MASKED}, key=len, reverse=True))


def too_short(secrets: Mapping[str, str]) -> list[str]:
    """Names whose (non-empty) value is too short to mask."""
    return sorted(name for name, v in secrets.items() if 0 < len(v) < MIN_MASKED)


def mask(text: str, values: Sequence[str]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text
