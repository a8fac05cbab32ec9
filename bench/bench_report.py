"""The event log, the HTML report and the live view at 10,000 tasks (issue 16): target, the report loads in
headless Chromium in < 3 s.

    python bench/bench_report.py [--n 10000] [--shapes lattice,flat] [--reps 3] [--baseline 42110c0]

For each shape, a deterministic run of N bullets (kannon.report.scale_sample: 3 layers with fan-in 3, or flat;
retries, failures and dynamic yields included) is

- written as an event log by kannon's own writer (``EventLogObserver``, one flushed JSON line per event);
- turned into a report as ``kannon report EVENTS -o FILE`` does (``write_report``: read, fold, lay out, render);
- loaded in headless Chromium (``--dump-dom``: the DOM after the page's script ran). ``load`` is the wall of
  that process minus the wall of the same process on a one-line page (Chromium's start and exit), medians of
  ``--reps``; ``in_page_ms`` is the page's own ``performance.now()`` when it marked itself rendered
  (navigation start to the end of its script, the layouts it forced included; painting is not);
- fed event by event to a live ``ProgressObserver`` on a terminal console (the CPU the live view costs the master
  for the whole run, and how many frames it built).

``--baseline REF`` also loads the report drawn with the page assets (report.js/.css/.html) of git commit REF, for a
before/after. Prints one JSON row per measurement and the load average at the start and the end.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console

import kannon.report as report
from kannon.backends.base import RunInfo
from kannon.events import read_events
from kannon.progress import EventLogObserver, ProgressObserver
from kannon.report.scale_sample import scale_events

REPO = Path(__file__).resolve().parents[1]
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]  # fmt: skip
TARGET_S = 3.0


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        sys.exit("headless Chromium is needed (Debian: apt-get install chromium)")
    return path


def dump(browser: str, page: Path, profile: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=600, check=True)  # fmt: skip
    return time.perf_counter() - t0, proc.stdout


def attr(dom: str, name: str) -> str | None:
    key = f'{name}="'
    i = dom.find(key, dom.find("<body"))
    return dom[i + len(key) : dom.index('"', i + len(key))] if i >= 0 else None


def load(browser: str, page: Path, blank: Path, tmp: Path, reps: int) -> dict[str, object]:
    walls, blanks, in_page = [], [], []
    for r in range(reps):  # interleaved, so both see the same load
        blanks.append(dump(browser, blank, tmp / f"profile-blank-{r}")[0])
        wall, dom = dump(browser, page, tmp / f"profile-{page.stem}-{r}")
        if attr(dom, "data-rendered") != "ok":
            raise SystemExit(f"{page} did not render: data-rendered={attr(dom, 'data-rendered')}")
        walls.append(wall)
        ms = attr(dom, "data-render-ms")
        if ms is not None:
            in_page.append(int(ms))
    wall, start = statistics.median(walls), statistics.median(blanks)
    return {"load_s": round(wall - start, 2), "process_wall_s": round(wall, 2), "blank_page_s": round(start, 2),
            "in_page_ms": statistics.median(in_page) if in_page else None, "html_bytes": page.stat().st_size,
            "target_s": TARGET_S, "meets_target": wall - start < TARGET_S}  # fmt: skip


def with_assets(ref: str):  # type: ignore[no-untyped-def]
    """report._asset reading the page's files as they were at git commit ``ref``."""

    def asset(name: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:kannon/report/{name}"],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip

    return asset


def live_view(events: list) -> dict[str, object]:  # type: ignore[type-arg]
    obs = ProgressObserver(Console(file=io.StringIO(), force_terminal=True, width=160), live=True)
    c0 = time.process_time()
    obs.kannon_run_start(run=RunInfo(run_id="run-scale", run_dir=Path(".")), backend="kubernetes")
    frame_ms = 0.0
    for i, e in enumerate(events):
        obs.kannon_event(event=e)
        if i == len(events) // 2:  # mid-run, ~100 tasks running: what one frame costs (built and drawn)
            c1, screen = time.process_time(), Console(file=io.StringIO(), force_terminal=True, width=160)
            for _ in range(20):
                screen.print(obs.render_live())
            frame_ms = (time.process_time() - c1) / 20 * 1000
            c0 += time.process_time() - c1
    obs.close()
    cpu = time.process_time() - c0
    return {"live_view_cpu_s": round(cpu, 2), "per_event_us": round(1e6 * cpu / len(events), 1),
            "frames_built": obs.frames_built, "frame_ms": round(frame_ms, 1)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--shapes", default="lattice,flat")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--baseline", default="", help="also load the page drawn with the assets of this git commit")
    args = p.parse_args()
    browser = chromium()
    print(json.dumps({"load_average_start": os.getloadavg(), "cpus": os.cpu_count()}), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-report-") as d:
        tmp = Path(d)
        blank = tmp / "blank.html"
        blank.write_text("<!doctype html><title>blank</title><p>x</p>\n", encoding="utf-8")
        for shape in args.shapes.split(","):
            events = scale_events(args.n, shape)
            log = tmp / f"{shape}.jsonl"
            t0 = time.perf_counter()
            writer = EventLogObserver(log)
            for e in events:
                writer.kannon_event(event=e)
            writer.close()
            t_log = time.perf_counter() - t0
            t0 = time.perf_counter()
            page = report.write_report(log, tmp / f"{shape}.html")
            t_report = time.perf_counter() - t0
            tasks = len({e.task_id for e in read_events(log) if e.task_id})
            row = {"shape": shape, "n": args.n, "tasks": tasks, "events": len(events),
                   "event_log_bytes": log.stat().st_size, "event_log_write_s": round(t_log, 2),
                   "kannon_report_s": round(t_report, 2), **load(browser, page, blank, tmp, args.reps),
                   **live_view(events)}  # fmt: skip
            print(json.dumps(row), flush=True)
            if args.baseline:
                saved = report._asset
                report._asset = with_assets(args.baseline)
                try:
                    old = report.write_report(log, tmp / f"{shape}-{args.baseline}.html")
                finally:
                    report._asset = saved
                print(json.dumps({"shape": shape, "assets": args.baseline,
                                  **load(browser, old, blank, tmp, 1)}), flush=True)  # fmt: skip
    print(json.dumps({"load_average_end": os.getloadavg()}), flush=True)


if __name__ == "__main__":
    main()
