"""``kannon hints suggest``: resource hints per task class from what its bullets really used (issue 17).

Input: one or more event logs (``kannon build --events``). Every ``succeeded``, ``failed`` and ``retried`` event of
a bullet whose ``usage`` is set is one sample (one attempt of one instance): its ``peak_rss_bytes`` and its
``cpu_seconds / wall_seconds`` (the cores it kept busy on average).

The rule, per task class (family):

* memory: the 95th percentile of the peaks by the nearest-rank method (the ``ceil(0.95 * n)``-th smallest, so
  a value that really occurred; with fewer than 20 samples that is the largest), times ``--headroom`` (default
  1.2), rounded UP: to a multiple of 16 Mi below 1 Gi, to a multiple of 256 Mi (a quarter Gi) from 1 Gi on;
  printed as ``Gi`` when whole, else ``Mi``. An OOM-killed attempt's peak is the limit it hit, so it pulls the
  suggestion above that limit (and one killed before it could report adds no cpu figure).
* cpu: the same percentile of the busy cores, rounded UP to a multiple of 50m below 1 core and of 250m from one
  core on (at least 50m), no headroom: a cpu request is a share, using more is throttled, never killed.

The logs are read as JSON lines directly, not through the Event class, so keys this kannon does not know yet are
not lost. Bad input (a missing, unreadable or non-kannon file, no samples) is one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PERCENTILE = 95
MEASURED_KINDS = ("succeeded", "failed", "retried")
MI, GI = 2**20, 2**30


class SuggestError(Exception):
    """Bad input: one line saying what to change."""


@dataclass
class Samples:
    family: str
    peaks: list[int] = field(default_factory=list)
    cores: list[float] = field(default_factory=list)
    instances: set[str] = field(default_factory=set)
    logs: set[str] = field(default_factory=set)
    attempts: int = 0
    oom_killed: int = 0


@dataclass(frozen=True)
class Suggestion:
    family: str
    memory: str | None
    cpu: str | None
    samples: int  # attempts measured
    memory_samples: int
    cpu_samples: int
    instances: int
    logs: int
    peak_p: int | None  # the percentile's peak, bytes
    cores_p: float | None
    oom_killed: int


def nearest_rank(values: Sequence[float], percentile: int = PERCENTILE) -> float:
    """The nearest-rank percentile: the ``ceil(p/100 * n)``-th smallest value (1-based)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percentile / 100 * len(ordered))) - 1]


def round_memory(num_bytes: float) -> str:
    """Round UP to 16 Mi steps below 1 Gi, to 256 Mi steps from 1 Gi on."""
    step = 16 * MI if num_bytes < GI else 256 * MI
    rounded = max(1, math.ceil(num_bytes / step)) * step
    return f"{rounded // GI}Gi" if rounded % GI == 0 else f"{rounded // MI}Mi"


def round_cpu(cores: float) -> str:
    """Round UP to 50m steps below 1 core, to 250m steps from one core on; at least 50m."""
    milli = cores * 1000
    step = 50 if milli < 1000 else 250
    rounded = max(50, math.ceil(round(milli, 6) / step) * step)  # round(): 0.3 * 1000 is 300.00000000000006
    return f"{rounded // 1000}" if rounded % 1000 == 0 else f"{rounded}m"


def read_samples(paths: Iterable[str | Path]) -> dict[str, Samples]:
    """Samples per bullet family from event logs; SuggestError for a file that is not a readable kannon log."""
    found: dict[str, Samples] = {}
    for path in paths:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SuggestError(f"{p} does not exist; pass event logs written by `kannon build --events FILE`") from None
        except IsADirectoryError:
            raise SuggestError(f"{p} is a directory; pass event logs written by `kannon build --events FILE`") from None
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
            raise SuggestError(f"{p} cannot be read as a kannon event log ({reason})") from None
        events = 0
        for line in text.splitlines():
            try:
                d = json.loads(line)
            except ValueError:
                continue  # a torn last line of a killed run
            if not (isinstance(d, dict) and isinstance(d.get("kind"), str) and "run_id" in d and "schema" in d):
                continue
            events += 1
            sample = _sample(d)
            if sample is None:
                continue
            family, peak, cores, oom = sample
            s = found.setdefault(family, Samples(family))
            s.instances.add(str(d.get("task_id")))
            s.logs.add(str(p))
            if peak is not None:
                s.peaks.append(peak)
            if cores is not None:
                s.cores.append(cores)
            s.attempts += 1
            s.oom_killed += oom
        if events == 0:
            raise SuggestError(f"{p} is not a kannon event log (no line is a kannon event); write one with "
                               "`kannon build --events FILE`")  # fmt: skip
    return found


def _sample(d: dict[str, Any]) -> tuple[str, int | None, float | None, int] | None:
    if d["kind"] not in MEASURED_KINDS or d.get("placement", "bullet") != "bullet":
        return None
    usage, family = d.get("usage"), d.get("family")
    if not isinstance(usage, dict) or not isinstance(family, str):
        return None
    peak = usage.get("peak_rss_bytes")
    peak = peak if isinstance(peak, int) and not isinstance(peak, bool) and peak > 0 else None
    cpu, wall = usage.get("cpu_seconds"), usage.get("wall_seconds")
    cores = None
    if usage.get("peak_source") == "oom-limit":
        pass  # killed before it could report (the master filled in the limit): its cpu time is unknown, not 0
    elif isinstance(cpu, (int, float)) and isinstance(wall, (int, float)) and wall > 0 and cpu >= 0:
        cores = float(cpu) / float(wall)
    if peak is None and cores is None:
        return None
    return family, peak, cores, 1 if usage.get("oom_limit_bytes") is not None else 0


def suggest(samples: Samples, headroom: float) -> Suggestion:
    peak = int(nearest_rank(samples.peaks)) if samples.peaks else None
    cores = nearest_rank(samples.cores) if samples.cores else None
    return Suggestion(
        family=samples.family, memory=round_memory(peak * headroom) if peak is not None else None,
        cpu=round_cpu(cores) if cores is not None else None, samples=samples.attempts,
        memory_samples=len(samples.peaks), cpu_samples=len(samples.cores), instances=len(samples.instances),
        logs=len(samples.logs), peak_p=peak, cores_p=cores, oom_killed=samples.oom_killed,
    )  # fmt: skip


def explain(s: Suggestion, headroom: float) -> str:
    """One comment line: what the suggestion rests on."""
    parts = [f"{s.family}: {s.samples} sample{'s' if s.samples != 1 else ''} "
             f"({s.instances} instance{'s' if s.instances != 1 else ''}, {s.logs} log{'s' if s.logs != 1 else ''})"]
    if s.peak_p is not None:
        parts.append(f"memory = p{PERCENTILE} peak {s.peak_p / MI:.1f} MiB of {s.memory_samples} x {headroom:g} "
                     f"-> {s.memory}")  # fmt: skip
    else:
        parts.append("memory: no peak measured")
    if s.cores_p is not None:
        parts.append(f"cpu = p{PERCENTILE} {s.cores_p:.3f} cores of {s.cpu_samples} -> {s.cpu}")
    if s.oom_killed:
        parts.append(f"{s.oom_killed} attempt(s) were OOM-killed: their peak is the limit they hit")
    return "; ".join(parts)


def render(suggestions: Sequence[Suggestion], headroom: float, fmt: str) -> str:
    lines = [f"# kannon hints suggest: memory p{PERCENTILE} (nearest rank) of peak RSS x {headroom:g}, cpu "
             f"p{PERCENTILE} of cpu seconds / wall seconds"]  # fmt: skip
    if fmt == "ini":
        lines.append("# apply with `kannon build --hints FILE` (file > instance > class; `kannon plan --hints FILE`)")
    for s in suggestions:
        lines.append(f"# {explain(s, headroom)}")
        values = [(k, v) for k, v in (("cpu", s.cpu), ("memory", s.memory)) if v is not None]
        if fmt == "ini":
            lines += [f"[{s.family}]", *(f"{k} = {v}" for k, v in values), ""]
        else:
            args = ", ".join(f'{k}="{v}"' for k, v in values)
            lines.append(f"kannon_hints = kannon.Hints({args})  # class {s.family}")
    return "\n".join(lines).rstrip("\n") + "\n"


def run(paths: Sequence[str], headroom: float = 1.2, fmt: str = "python", only: Sequence[str] = ()) -> str:
    """The suggestions as text; SuggestError when there is nothing to suggest from."""
    found = read_samples(paths)
    if only:
        missing = [f for f in only if f not in found]
        if missing:
            raise SuggestError(f"no usage samples for task class {missing[0]} in {', '.join(paths)}: no attempt of it "
                               f"was measured{_known(found)}")  # fmt: skip
        found = {f: found[f] for f in only}
    if not found:
        raise SuggestError(f"no usage samples in {', '.join(paths)}: no bullet attempt carries `usage` (logs from a "
                           "kannon that measures bullets have it); nothing to suggest from")  # fmt: skip
    return render([suggest(found[f], headroom) for f in sorted(found)], headroom, fmt)


def _known(found: dict[str, Samples]) -> str:
    return f" (measured: {', '.join(sorted(found))})" if found else ""


# -- the subcommand --------------------------------------------------------------------------------------------
def headroom_type(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number like 1.2") from None
    if not math.isfinite(value) or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the headroom is a factor >= 1 (below 1 would suggest less "
                                         "than was used)")  # fmt: skip
    return value


def add_parser(sub: Any) -> None:
    h = sub.add_parser("hints", help="resource hints from what bullets really used")
    hsub = h.add_subparsers(dest="hints_command", required=True)
    s = hsub.add_parser("suggest", help="suggest cpu and memory per task class from event logs",
                        description="Suggest cpu and memory hints per task class from the usage recorded in event "
                                    "logs (kannon build --events).")  # fmt: skip
    s.add_argument("logs", nargs="+", metavar="RUN.jsonl")
    s.add_argument("--headroom", type=headroom_type, default=1.2, metavar="FACTOR",
                   help="memory suggestion = p95 peak x FACTOR (default: 1.2)")  # fmt: skip
    s.add_argument("--format", choices=["python", "ini"], default="python",
                   help="python: kannon_hints lines to paste into each class; ini: a hints file for --hints")
    s.add_argument("--task", action="append", default=[], metavar="FAMILY",
                   help="only this task class (repeatable); exit 2 if it has no samples")  # fmt: skip
    s.set_defaults(func=cmd)


def cmd(ns: argparse.Namespace) -> int:
    try:
        text = run(ns.logs, ns.headroom, ns.format, ns.task)
    except SuggestError as e:
        print(f"kannon: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0
