"""Benchmark code shipping (issue 15): the master's collect + archive build for a generated 200-module project, and
the child's fetch + extract, cold and cached.

    python bench/bench_ship.py [--modules 200] [--reps 9]

The project (a temporary directory) is a package of ``--modules`` modules in 10 subpackages, each module ~3 KB of
ordinary code, plus a few data files; the benchmark process really imports all of it, so ``collect`` scans a real
``sys.modules`` (gokart, luigi and kannon included, as in a master). Prints one JSON row per measurement, with the
date, the load average at the start and end, and ``meets_target`` where issue 15 sets one:

- ``collect_build``: ``ship.collect`` + ``ship.build_archive``, median and max. Target: under 1 s.
- ``upload_local``: first upload to a local workspace, then the second (skipped: the name is the content hash).
- ``child_cold``: ``ship_child.fetch_and_activate`` into an empty cache (read, sha256, extract, publish).
- ``child_cached``: the same call when the node's cache already has the extraction. Target: about nothing (< 5 ms).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import gokart  # noqa: E402, F401 - a master has these loaded: collect() must skip them
import luigi  # noqa: E402, F401

from kannon import ship, ship_child  # noqa: E402

MODULE = '''"""Generated module {i} of the benchmark project."""
from __future__ import annotations

import dataclasses
import json

CONSTANT_{i} = {i}


@dataclasses.dataclass
class Record{i}:
    name: str
    value: int = {i}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def transform_{i}(rows: list[dict[str, int]]) -> list[dict[str, int]]:
    out = []
    for row in rows:
        item = dict(row)
        item["k{i}"] = item.get("k{i}", 0) + CONSTANT_{i}
        out.append(item)
    return out
''' + "\n".join(f"def helper_{{i}}_{j}(x: int) -> int:\n    return x * {j} + {{i}}\n\n" for j in range(40))


def make_project(root: Path, modules: int) -> str:
    pkg = root / "benchproj"
    per = max(1, modules // 10)
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "lookup.csv").write_text("a,b\n" * 500)
    (pkg / "data" / "schema.json").write_text(json.dumps({"fields": list(range(200))}))
    names = []
    for i in range(modules):
        sub = pkg / f"sub{i // per}"
        if not (sub / "__init__.py").exists():
            sub.mkdir()
            (sub / "__init__.py").write_text("")
        (sub / f"mod{i}.py").write_text(MODULE.format(i=i))
        names.append(f"benchproj.sub{i // per}.mod{i}")
    sys.path.insert(0, str(root))
    for name in names:
        importlib.import_module(name)
    return "benchproj"


def timed(fn: Callable[[], Any], reps: int, setup: Callable[[], Any] | None = None) -> list[float]:
    times = []
    for _ in range(reps):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def row(name: str, times: list[float], target: float | None = None, **extra: Any) -> None:
    out: dict[str, Any] = {"bench": name, "median_ms": round(statistics.median(times) * 1000, 2),
                           "max_ms": round(max(times) * 1000, 2), "reps": len(times), **extra}  # fmt: skip
    if target is not None:
        out["target_ms"] = target * 1000
        out["meets_target"] = statistics.median(times) < target
    print(json.dumps(out), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--modules", type=int, default=200)
    p.add_argument("--reps", type=int, default=9)
    ns = p.parse_args()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    print(json.dumps({"date": now, "loadavg_start": os.getloadavg(), "python": sys.version.split()[0],
                      "cpus": os.cpu_count()}), flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        top = make_project(root, ns.modules)
        code_root = ship.code_root_for(top)
        manifest = ship.collect(code_root)
        archive = ship.build_archive(manifest)
        row("collect_build", timed(lambda: ship.build_archive(ship.collect(code_root)), ns.reps), target=1.0,
            modules=ns.modules, files=archive.files, size=archive.size, compressed=len(archive.data),
            loaded_modules=len(sys.modules))  # fmt: skip
        row("collect_only", timed(lambda: ship.collect(code_root), ns.reps))
        ws = Path(tmp) / "ws"
        first = timed(lambda: ship.upload(archive, str(ws)), 1)
        row("upload_local_first", first)
        row("upload_local_again", timed(lambda: ship.upload(archive, str(ws)), ns.reps))
        location = ship.location_for(archive, str(ws))
        caches = iter(range(10**6))
        cache_dirs: list[Path] = []

        def fresh_cache() -> None:
            cache_dirs.append(Path(tmp) / f"cache{next(caches)}")

        row("child_cold", timed(lambda: ship_child.fetch_and_activate(location, archive.sha256, cache_dirs[-1]),
                                ns.reps, setup=fresh_cache))  # fmt: skip
        warm = cache_dirs[-1]
        row("child_cached", timed(lambda: ship_child.fetch_and_activate(location, archive.sha256, warm), ns.reps),
            target=0.005)  # fmt: skip
    print(json.dumps({"loadavg_end": os.getloadavg()}), flush=True)


if __name__ == "__main__":
    main()
