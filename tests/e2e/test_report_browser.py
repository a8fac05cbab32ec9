"""The HTML report in a real browser: headless Chromium loads it from a file, the page's script draws every task
without a single console message (errors, CSP violations), and a screenshot is kept under test-artifacts/.

Skipped when Chromium is missing, except in CI (CI=true) where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from kannon.events import Event, read_events
from kannon.report import render_report, write_report
from kannon.report.sample import START, sample_events
from kannon.report.scale_sample import scale_events
from tests.support.services import service_unavailable

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]  # fmt: skip

pytestmark = pytest.mark.browser

# Would change the page if any of it ran or was parsed as markup.
EVIL = (
    "</script><script>document.body.dataset.pwned='script'</script>"
    "<img src=x onerror=\"document.body.dataset.pwned='img'\"><b>bold</b>"
)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
    if not os.path.exists(path):
        service_unavailable("headless Chromium is not installed", "install the Debian package `chromium`")
    return path


class Page:
    def __init__(self, dom: str, console: list[str]) -> None:
        self.dom = dom
        self.console = console
        parser = _DomParser()
        parser.feed(dom)
        self.body = parser.body
        self.tags = parser.tags
        self.ids_by_kind = parser.ids_by_kind
        self.text = parser.text
        self.groups = parser.groups


class _DomParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.body: dict[str, str | None] = {}
        self.tags: dict[str, int] = defaultdict(int)
        self.ids_by_kind: dict[str, list[str]] = defaultdict(list)
        self.text: list[str] = []
        self.groups: list[str] = []  # data-group of the graph's group nodes (a big run's graph)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags[tag] += 1
        if tag == "body":
            self.body = a
        if a.get("data-group"):
            self.groups.append(a["data-group"] or "")
        task = a.get("data-task-id")
        if task:
            cls = (a.get("class") or "").split()
            kind = "graph" if "node" in cls else "timeline" if "row" in cls else tag
            self.ids_by_kind[kind].append(task)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def load(chromium: str, html_file: Path, tmp_path: Path, screenshot: Path | None = None) -> Page:
    """Dump the DOM after the page's script ran, with every console message Chromium logged."""
    profile = tmp_path / f"profile-{html_file.stem}"
    base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0"]
    url = html_file.resolve().as_uri()
    proc = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.unlink(missing_ok=True)
        shot = subprocess.run([*base, f"--screenshot={screenshot}", "--window-size=1400,1000", url],
                              capture_output=True, text=True, timeout=180)  # fmt: skip
        assert shot.returncode == 0, shot.stderr[-3000:]
        console += [line for line in shot.stderr.splitlines() if ":CONSOLE" in line]
    return Page(proc.stdout, console)


def assert_png(path: Path, width: int, height: int) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    w, h = struct.unpack(">II", data[16:24])  # the IHDR chunk follows the signature
    assert (w, h) == (width, height)
    assert len(data) > 20_000, "the screenshot is suspiciously small (a blank page?)"


def wide_events(n_branches: int = 40) -> list[Event]:
    """A bigger run: a prepare task, n parallel bullets (some evicted once), a merge per 10, and a final task."""
    evs: list[Event] = [Event("run_started", "run-wide", time=START, backend="kubernetes")]
    prep, final = "p" * 32, "f" * 32
    branches = [f"{i:032x}" for i in range(n_branches)]
    merges = [f"m{i:031x}" for i in range(0, n_branches, 10)]

    def ev(kind: str, t: float, tid: str, family: str, params: str, placement: str, **kw: Any) -> None:
        evs.append(
            Event(
                kind, "run-wide", time=START + t, task_id=tid, family=family, params=params, placement=placement, **kw
            )
        )

    ev("planned", 0.0, final, "Final", "", "master", deps=tuple(merges))
    for j, m in enumerate(merges):
        ev("planned", 0.0, m, "Merge", f"chunk={j}", "master", deps=tuple(branches[j * 10 : j * 10 + 10]))
    for i, b in enumerate(branches):
        ev("planned", 0.0, b, "Train", f"fold={i}, lr=0.{i:02d}", "bullet", deps=(prep,))
    ev("skipped_complete", 0.0, prep, "Prepare", "date=2026-11-01", "complete")
    for i, b in enumerate(branches):
        train = ("Train", f"fold={i}, lr=0.{i:02d}", "bullet")
        t0 = 0.2 + 0.05 * i
        ev("launched", t0, b, *train, attempt=1)
        ev("started", t0 + 0.5 + (i % 7) * 0.1, b, *train, attempt=1, where=f"pod run-wide-{b[:8]}-1")
        end = t0 + 3 + (i % 5)
        attempt = 1
        if i % 9 == 4:
            reason = "pod evicted (node pressure); retried"
            ev("retried", end, b, *train, attempt=1, exit_code=137, failure_class="Evicted", reason=reason)
            ev("launched", end + 0.1, b, *train, attempt=2)
            ev("started", end + 1.0, b, *train, attempt=2, where=f"pod run-wide-{b[:8]}-2")
            end, attempt = end + 4, 2
        ev("succeeded", end, b, *train, attempt=attempt)
    t = 14.0
    for j, m in enumerate(merges):
        ev("launched", t, m, "Merge", f"chunk={j}", "master", attempt=1, where="master")
        ev("started", t, m, "Merge", f"chunk={j}", "master", attempt=1, where="master")
        t += 0.5
        ev("succeeded", t, m, "Merge", f"chunk={j}", "master", attempt=1, where="master")
    ev("launched", t, final, "Final", "", "master", attempt=1, where="master")
    ev("started", t, final, "Final", "", "master", attempt=1, where="master")
    ev("succeeded", t + 0.4, final, "Final", "", "master", attempt=1, where="master")
    evs.append(Event("run_finished", "run-wide", time=START + t + 0.5, reason="ok"))
    evs.sort(key=lambda e: e.time)
    return evs


def assert_rendered(page: Page, task_ids: set[str]) -> None:
    assert page.console == [], "the page logged to the console:\n" + "\n".join(page.console)
    assert page.body.get("data-rendered") == "ok", page.body
    assert page.body.get("data-task-count") == str(len(task_ids))
    assert set(page.ids_by_kind["graph"]) == task_ids and len(page.ids_by_kind["graph"]) == len(task_ids)
    assert set(page.ids_by_kind["tr"]) == task_ids  # the task table: every task once
    assert len(page.ids_by_kind["tr"]) == len(task_ids)
    # the graph fits the box or pans (never a node out of reach), and no shortened label ends in a second "…"
    assert page.body.get("data-graph-fits") in ("yes", "pans"), page.body
    doubled = [t for t in page.text if "……" in t or t.rstrip().endswith("(…")]
    assert not doubled, doubled


def test_report_of_a_failed_run_shows_every_task_escaped(chromium: str, tmp_path: Path):
    events = sample_events(params_extra=EVIL)
    html_file = write_report(events, tmp_path / "failed-run.html")
    page = load(chromium, html_file, tmp_path, screenshot=ARTIFACTS / "report-failed-run.png")
    ids = {e.task_id for e in events if e.task_id}
    assert_rendered(page, ids)
    # the timeline has one row per task that ran: the 6 bullets (the complete and upstream-failed ones never ran)
    assert len(page.ids_by_kind["timeline"]) == 6
    # the hostile params were drawn as text and nothing in them ran or became markup
    assert "pwned" not in " ".join(f"{k}={v}" for k, v in page.body.items())
    assert page.tags["img"] == 0 and page.tags["b"] == 0
    assert page.tags["script"] == 2
    text = "".join(page.text)
    assert f"TaskC(param=c0{EVIL})" in text
    assert "ValueError: column 'c1' is empty" in text  # the failure's log tail is shown
    assert_png(ARTIFACTS / "report-failed-run.png", 1400, 1000)


def test_report_of_a_wide_run_with_retries(chromium: str, tmp_path: Path):
    events = wide_events()
    html_file = write_report(events, tmp_path / "wide-run.html")
    page = load(chromium, html_file, tmp_path, screenshot=ARTIFACTS / "report-wide-run.png")
    ids = {e.task_id for e in events if e.task_id}
    assert len(ids) == 46
    assert_rendered(page, ids)
    assert len(page.ids_by_kind["timeline"]) == 45  # all but the already complete Prepare
    assert "4 task(s) needed retries" in "".join(page.text)  # folds 4, 13, 22 and 31 were evicted once
    assert_png(ARTIFACTS / "report-wide-run.png", 1400, 1000)


def test_report_of_10000_tasks_is_grouped_and_paged(chromium: str, tmp_path: Path):
    """Issue 16: a 10,000-task run (3 layers, fan-in 3, retries, failures, dynamic dependencies) renders; the graph
    shows one node per family and layer, the timeline and the task table one page of rows, failures first. How
    fast it loads is measured by bench/bench_report.py, not asserted here."""
    events = scale_events(10_000, "lattice")
    ids = {e.task_id for e in events if e.task_id}
    failed = {e.task_id for e in events if e.kind == "failed"}
    not_run = {e.task_id for e in events if e.kind == "upstream_failed"}
    assert len(ids) == 10_021 and len(failed) == 10 and not_run  # 10,000 bullets, 20 yielded tasks, the root
    html_file = write_report(events, tmp_path / "scale-run.html")
    page = load(chromium, html_file, tmp_path, screenshot=ARTIFACTS / "report-10000-tasks.png")
    assert page.console == [], "the page logged to the console:\n" + "\n".join(page.console)
    assert page.body.get("data-rendered") == "ok", page.body
    assert page.body.get("data-task-count") == "10021"
    text = "\n".join(page.text)
    assert "10 failed" in text and f"{len(not_run)} upstream failed" in text and "10021" in text
    # every failure is listed with its reason, and heads the task table (failures first)
    assert failed <= set(page.ids_by_kind["div"])
    assert "Layer1.run raised ValueError: shard 4501 is empty" in text
    rows = page.ids_by_kind["tr"]
    assert len(rows) == 500 and set(rows[:10]) == failed
    # the graph: no node per task but one per (layer, family), with the dynamic edges drawn
    assert page.ids_by_kind["graph"] == []
    assert sorted(page.groups) == ["0|Extra", "0|Layer0", "1|Layer0", "1|Layer1", "2|Layer1", "2|Layer2",
                                   "3|Layer2", "4|Root"]  # fmt: skip
    assert 'class="edge dynamic"' in page.dom
    assert page.body.get("data-graph-fits") in ("yes", "pans"), page.body
    # the timeline: the first page of rows, by first launch
    assert len(page.ids_by_kind["timeline"]) == 250
    # the resources view: one row per class; a class's attempts are listed up to 100, the flagged ones first
    assert "more attempts (at risk and over-provisioned ones are listed first)" in text
    assert len(page.ids_by_kind["div"]) <= len(failed) + 4 * 100
    assert_png(ARTIFACTS / "report-10000-tasks.png", 1400, 1000)


def chain_events(n: int, families: int) -> list[Event]:
    """A run of one chain of n tasks, each needing the one before, the families cycling through ``families``."""
    evs = [Event("run_started", "run-chain", time=START, backend="local")]
    prev: tuple[str, ...] = ()
    for i in range(n):
        tid, fam = f"{i:032x}", f"Step{i % families}"
        common: dict[str, Any] = {"task_id": tid, "family": fam, "params": f"i={i}", "placement": "bullet"}
        evs.append(Event("planned", "run-chain", time=START, deps=prev, **common))
        evs.append(Event("launched", "run-chain", time=START + i, attempt=1, **common))
        evs.append(Event("succeeded", "run-chain", time=START + i + 0.9, attempt=1, **common))
        prev = (tid,)
    evs.append(Event("run_finished", "run-chain", time=START + n, reason="ok"))
    return evs


@pytest.mark.parametrize(("families", "groups"), [(1, ["Step0"]), (3, ["Step0", "Step1", "Step2"]), (600, [])])
def test_a_long_chain_is_grouped_by_family_or_not_drawn(chromium: str, tmp_path: Path, families: int,
                                                        groups: list[str]):  # fmt: skip
    """1,200 layers: one group per (layer, family) would be 1,200 nodes, so the graph groups by family; with 600
    families it is not drawn (the table lists every task)."""
    page = load(chromium, write_report(chain_events(1_200, families), tmp_path / "chain.html"), tmp_path)
    assert page.console == [] and page.body.get("data-rendered") == "ok", page.console
    assert sorted(page.groups) == groups and page.ids_by_kind["graph"] == []
    assert ("too many to draw as a graph" in "".join(page.text)) == (not groups)


# Run after the report's own script on the page (appended to it, so the page's CSP hash covers it): clicks a graph
# group, filters by a task id, turns the timeline's page, and leaves what it saw on <body data-...>.
CLICKS = """
(function () {
  var b = document.body.dataset, rows = function (sel) { return document.querySelectorAll(sel); };
  var labels = function () { return Array.prototype.map.call(rows("#tasks tbody tr"), function (r) {
    return r.cells[1].textContent; }); };
  document.querySelector('[data-group="1|Layer1"]').dispatchEvent(new MouseEvent("click", { bubbles: true }));
  b.groupRows = String(labels().length);
  b.groupOnly = String(labels().every(function (l) { return l.indexOf("Layer1(") === 0; }));
  b.more = document.querySelector("button.more").textContent;
  document.querySelector("button.more").click();
  b.groupRowsAfterMore = String(labels().length);
  var f = document.getElementById("filter");
  f.value = "__ID__";
  f.dispatchEvent(new Event("input"));
  b.idRows = labels().join("|");
  var first = rows("#timeline .row")[0].getAttribute("data-task-id");
  Array.prototype.filter.call(rows(".pager button"), function (x) { return x.textContent === "later ›"; })[0].click();
  b.page2Rows = String(rows("#timeline .row").length);
  b.page2Moved = String(rows("#timeline .row")[0].getAttribute("data-task-id") !== first);
})();
"""


def test_report_of_10000_tasks_pages_and_groups_respond_to_clicks(chromium: str, tmp_path: Path, monkeypatch):
    import kannon.report as report

    events = scale_events(10_000, "lattice")
    failed = sorted({e.task_id for e in events if e.kind == "failed" and e.task_id})
    asset = report._asset
    monkeypatch.setattr(report, "_asset", lambda name: asset(name) + (
        CLICKS.replace("__ID__", failed[0][:12]) if name == "report.js" else ""))  # fmt: skip
    page = load(chromium, write_report(events, tmp_path / "scale-clicks.html"), tmp_path)
    assert page.console == [], page.console
    b = page.body
    assert b.get("data-rendered") == "ok"
    # the Layer1 group of layer 1 holds 3,315 tasks: the table lists them 500 at a time, and nothing else
    assert (b.get("data-group-rows"), b.get("data-group-only")) == ("500", "true"), b
    assert b.get("data-more") == "show 500 more (500 of 3315 shown)" and b.get("data-group-rows-after-more") == "1000"
    failed_label = next(f"{e.family}({e.params})" for e in events if e.task_id == failed[0])
    assert b.get("data-id-rows") == failed_label  # a task id finds its task among all 10,021
    assert (b.get("data-page2-rows"), b.get("data-page2-moved")) == ("250", "true")


def test_the_checks_catch_a_page_whose_script_did_not_run(chromium: str, tmp_path: Path):
    """Negative control: a page edited after it was written no longer matches its CSP hash, so the browser
    refuses the script — and the same checks the other tests rely on notice both symptoms."""
    page_text = render_report(sample_events())
    tampered = page_text.replace('dataset.rendered = "ok"', 'dataset.rendered = "ok" ', 1)
    assert tampered != page_text
    html_file = tmp_path / "tampered.html"
    html_file.write_text(tampered, encoding="utf-8")
    page = load(chromium, html_file, tmp_path)
    assert page.body.get("data-rendered") == "no"
    assert any("Content Security Policy" in line for line in page.console)
    with pytest.raises(AssertionError):
        assert_rendered(page, {e.task_id for e in sample_events() if e.task_id})


@pytest.mark.slow
def test_report_of_a_real_quickstart_build(chromium: str, tmp_path: Path):
    """`kannon build --events --report` on the quick-start pipeline, then `kannon report` on its event log: the
    two pages are identical and the browser draws all 13 tasks."""
    env = {**os.environ, "QUICKSTART_BULLET_SECONDS": "0.3", "QUICKSTART_MASTER_SECONDS": "0.05"}
    events_file, report_file = tmp_path / "events.jsonl", tmp_path / "build-report.html"
    build = subprocess.run(
        [sys.executable, "-m", "kannon", "build", str(REPO / "examples/quickstart/pipeline.py") + ":root",
         "--workspace", str(tmp_path / "ws"), "--events", str(events_file), "--report", str(report_file)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "kannon: run " in build.stderr and " ok in " in build.stderr  # the summary headline
    again = tmp_path / "from-log.html"
    rep = subprocess.run([sys.executable, "-m", "kannon", "report", str(events_file), "-o", str(again)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert rep.returncode == 0, rep.stderr
    assert again.read_text(encoding="utf-8") == report_file.read_text(encoding="utf-8")
    events = list(read_events(events_file))
    ids = {e.task_id for e in events if e.task_id}
    assert len(ids) == 13
    page = load(chromium, report_file, tmp_path, screenshot=ARTIFACTS / "report-quickstart.png")
    assert_rendered(page, ids)
    # the header names the target, the command line, the workspace and kannon's version
    text = "\n".join(page.text)
    assert "examples/quickstart/pipeline.py:root" in text and "kannon version" in text
    assert "kannon build " in text and str(tmp_path / "ws") in text
    # a rerun with nothing to do keeps the report of the run that did something
    before = report_file.read_text(encoding="utf-8")
    rerun = subprocess.run(
        [sys.executable, "-m", "kannon", "build", str(REPO / "examples/quickstart/pipeline.py") + ":root",
         "--workspace", str(tmp_path / "ws"), "--events", str(events_file), "--report", str(report_file)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert report_file.read_text(encoding="utf-8") == before
    assert f"kannon: nothing to do (every task was already complete); kept the last run's report: {report_file}" in (
        rerun.stderr)
    assert len(page.ids_by_kind["timeline"]) == 13
    assert_png(ARTIFACTS / "report-quickstart.png", 1400, 1000)
