from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kannon.events import TASK_KINDS, Event, EventLog, read_events
from kannon.report import render_report, write_report
from kannon.report.data import critical_path, layers, order_layers, place, report_data, totals
from kannon.report.model import attempt_outcome, fold, last_run, runs, select_run
from kannon.report.sample import START, sample_events, task_id
from kannon.result import Placement, Status

A, C0, C1, D, ROOT = (task_id(n) for n in ("TaskA", "TaskC0", "TaskC1", "TaskD", "Report"))
B = [task_id(f"TaskB{i}") for i in range(4)]


def embedded_data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="kannon-data">(.*?)</script>', page, re.S)
    assert m, "data block missing"
    return json.loads(m.group(1))


# -- folding events into a result -------------------------------------------------------------------------------
def test_fold_rebuilds_every_task_and_attempt():
    m = fold(sample_events())
    r = m.result()
    assert r.run_id == "run-sample" and r.backend == "local" and r.root_id == ROOT
    assert r.started_at == START and r.finished_at == START + 3.70 and not r.cancelled
    assert {t: rec.status for t, rec in r.tasks.items()} == {
        ROOT: Status.UPSTREAM_FAILED, D: Status.UPSTREAM_FAILED, C0: Status.SUCCEEDED, C1: Status.FAILED,
        B[0]: Status.SUCCEEDED, B[1]: Status.SUCCEEDED, B[2]: Status.SUCCEEDED, B[3]: Status.SUCCEEDED,
        A: Status.COMPLETE,
    }  # fmt: skip
    assert m.retries == 1
    assert r.tasks[A].placement == Placement.COMPLETE
    assert r.tasks[D].deps == (C0, C1)
    b2 = r.tasks[B[2]]
    assert [a.number for a in b2.attempts] == [1, 2]
    first, second = b2.attempts
    assert (first.launched_at, first.started_at, first.finished_at) == (START + 0.12, START + 0.50, START + 1.20)
    assert first.exit_code == 137 and first.failure_class == "OOMKilled" and first.log_tail[-1] == "Killed"
    assert [attempt_outcome(b2, a) for a in b2.attempts] == ["retried", "succeeded"]
    assert second.where == "pid 4110"
    c1 = r.tasks[C1]
    assert c1.reason == "TaskC.run raised ValueError: column 'c1' is empty"
    assert c1.last is not None and c1.last.exit_code == 6 and len(c1.last.log_tail) == 4
    assert m.counts() == {"upstream_failed": 2, "succeeded": 5, "failed": 1, "complete": 1}


def test_fold_of_a_log_cut_short_keeps_running_attempts_open():
    evs = [e for e in sample_events() if e.time <= START + 2.0]
    m = fold(evs)
    assert m.outcome is None and m.finished_at is None
    b3 = m.tasks[B[3]]
    assert b3.status == Status.RUNNING and attempt_outcome(b3, b3.attempts[0]) == "running"
    c0 = m.tasks[C0]
    assert attempt_outcome(c0, c0.attempts[0]) == "waiting"  # launched at +1.95, not started yet
    data = report_data(m)
    assert data["run"]["outcome"] == "incomplete" and data["run"]["finished"] is False
    assert data["run"]["wall"] == pytest.approx(1.95)  # up to the last event seen


def test_a_cancelled_attempt_and_a_task_failing_before_launch():
    evs = [
        Event("run_started", "r", time=START),
        Event("planned", "r", time=START, task_id="a" * 32, family="A", params="", placement="bullet"),
        Event("planned", "r", time=START, task_id="b" * 32, family="B", params="", placement="bullet"),
        Event("launched", "r", time=START + 1, task_id="a" * 32, attempt=1),
        Event("started", "r", time=START + 2, task_id="a" * 32, attempt=1, where="pod a-1"),
        Event("failed", "r", time=START + 2, task_id="b" * 32, reason="spec too large"),
        Event("cancelled", "r", time=START + 3, task_id="a" * 32, reason="run cancelled"),
        Event("run_finished", "r", time=START + 4, reason="cancelled"),
    ]
    r = fold(evs).result()
    a, b = r.tasks["a" * 32], r.tasks["b" * 32]
    assert a.status == Status.CANCELLED and a.attempts[0].finished_at == START + 3
    assert attempt_outcome(a, a.attempts[0]) == "cancelled"
    assert b.status == Status.FAILED and b.attempts == [] and b.reason == "spec too large"
    assert r.cancelled


def test_last_run_picks_the_latest_run_or_the_one_asked_for():
    first = sample_events("run-1")
    second = sample_events("run-2", fail=False, start=START + 100)
    assert last_run(first + second) == second
    assert last_run(first + second, "run-1") == first
    # a re-attached run repeats its run id: only its last segment is shown
    again = sample_events("run-1", fail=False, start=START + 200)
    assert last_run(first + again) == again
    assert last_run([]) == []


def test_runs_of_an_appended_log_and_selecting_one():
    first = sample_events("run-aaa1")
    second = sample_events("run-bbb2", fail=False, start=START + 100)
    again = sample_events("run-aaa1", fail=False, start=START + 200)
    log = first + second + again
    segs = runs(log)
    assert [(s.index, s.run_id, s.outcome) for s in segs] == [
        (1, "run-aaa1", "failed"), (2, "run-bbb2", "ok"), (3, "run-aaa1", "ok")]  # fmt: skip
    assert segs[0].started == first[0].time
    assert select_run(log) == again == select_run(log, "-1") == select_run(log, "3")
    assert select_run(log, "1") == first and select_run(log, "-3") == first
    assert select_run(log, "run-b") == second
    assert select_run(log, "run-aaa1") == again  # a repeated run id: its latest segment
    assert select_run([]) == []
    listing = r"holds 3 run\(s\) \(1: run-aaa1; 2: run-bbb2; 3: run-aaa1\); there is no run 4"
    with pytest.raises(ValueError, match=listing):
        select_run(log, "4")
    with pytest.raises(ValueError, match="no run 0"):
        select_run(log, "0")
    with pytest.raises(ValueError, match="more than one run id starts with 'run-'"):
        select_run(log, "run-")
    with pytest.raises(ValueError, match="no run id starts with 'zzz'"):
        select_run(log, "zzz")


def test_a_run_id_prefix_of_digits_only_picks_that_run_not_an_index():
    # run ids are hex: ~6% of 6-character prefixes are all digits ("957166"); such a prefix named a run by its id,
    # yet was read as "the 957166th run". A number shorter than 4 digits (git's shortest abbreviation) is a position.
    first = sample_events("957166ab12cd")
    second = sample_events("0123456789ab", fail=False, start=START + 100)
    log = first + second
    assert select_run(log, "957166") == first and select_run(log, "9571") == first
    assert select_run(log, "0123") == second
    assert select_run(log, "1") == first and select_run(log, "2") == second and select_run(log, "-2") == first
    with pytest.raises(ValueError, match="there is no run 5555"):
        select_run(log, "5555")  # neither an id prefix nor a position


def test_a_run_cut_short_and_events_before_any_run_started():
    cut = [e for e in sample_events("run-cut") if e.kind != "run_finished"]
    headless = sample_events("run-old", start=START - 100)[3:]  # a truncated log: its run_started is gone
    segs = runs(headless + cut)
    assert [s.run_id for s in segs] == ["run-old", "run-cut"]
    assert segs[1].outcome.startswith("unfinished")


def test_report_cli_lists_runs_and_renders_the_one_asked_for(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from kannon.cli import main

    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    for e in sample_events("run-aaa1") + sample_events("run-bbb2", fail=False, start=START + 100):
        log.write(e)
    log.close()
    assert main(["report", str(path), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].split()[:2] == ["1", "run-aaa1"] and lines[0].endswith("failed")
    assert lines[1].split()[:2] == ["2", "run-bbb2"] and lines[1].endswith("ok")
    out = tmp_path / "first.html"
    assert main(["report", str(path), "-o", str(out), "--run", "1"]) == 0
    assert embedded_data(out.read_text())["run"]["run_id"] == "run-aaa1"
    assert main(["report", str(path), "-o", str(out)]) == 0
    assert embedded_data(out.read_text())["run"]["run_id"] == "run-bbb2"
    assert main(["report", str(path), "-o", str(out), "--run", "7"]) == 2
    err = capsys.readouterr().err
    assert "there is no run 7" in err and "--list" in err
    assert main(["report", str(path)]) == 2
    assert "needs -o" in capsys.readouterr().err


# -- layout and totals --------------------------------------------------------------------------------------------
def test_layers_follow_the_longest_dependency_chain():
    deps = {"root": ("d",), "d": ("c0", "c1"), "c0": ("b",), "c1": ("a",), "b": ("a",), "a": ()}
    assert layers(deps) == {"a": 0, "b": 1, "c1": 1, "c0": 2, "d": 3, "root": 4}


def test_layers_of_a_cycle_or_unknown_deps_terminate():
    assert layers({"x": ("y",), "y": ("x",), "z": ("missing",)}) == {"x": 0, "y": 0, "z": 0}


def test_layers_of_a_long_chain_are_computed_iteratively():
    deps = {f"t{i}": ((f"t{i - 1}",) if i else ()) for i in range(20000)}
    assert layers(deps)["t19999"] == 19999


def test_ordering_uncrosses_edges():
    # discovery order puts x1 above x0 although x0 hangs under the top node p0
    deps = {"p0": (), "p1": (), "x1": ("p1",), "x0": ("p0",)}
    lay = layers(deps)
    row = order_layers(deps, lay)
    assert row["p0"] < row["p1"] and row["x0"] < row["x1"]
    assert sorted(row[n] for n in ("x0", "x1")) == [0, 1]


def test_placement_lines_up_merges_and_chains_with_the_widest_layer():
    # a -> b0..b3 -> m01 (b0, b1), m23 (b2, b3) -> z
    deps = {"z": ("m01", "m23"), "m01": ("b0", "b1"), "m23": ("b2", "b3"), "a": ()}
    deps.update({f"b{i}": ("a",) for i in range(4)})
    lay = layers(deps)
    y = place(deps, lay, order_layers(deps, lay))
    assert [y[f"b{i}"] for i in range(4)] == [0, 1, 2, 3]  # the widest layer is packed
    assert (y["m01"], y["m23"]) == (0.5, 2.5)  # each merge beside what it merges
    assert y["z"] == 1.5 and y["a"] == 1.5


def test_placement_never_overlaps_nodes_of_a_layer():
    deps = {"x": (), "y": (), "p": ("x",), "q": ("x",), "r": ("x",)}
    lay = layers(deps)
    y = place(deps, lay, order_layers(deps, lay))
    column = sorted(y[n] for n in ("p", "q", "r"))
    assert all(b - a >= 1 for a, b in zip(column, column[1:]))
    assert (y["x"], y["y"]) == (1.0, 2.0)  # x centred on p, q, r; the unconnected y just below it


def test_totals_of_the_sample_run():
    tot = totals(fold(sample_events()))
    assert tot.wall == pytest.approx(3.70)
    # running time of every attempt, by hand: b0 1.2, b1 1.45, b2 0.7 + 1.3, b3 1.55, c0 1.25, c1 0.7
    assert tot.task_time == pytest.approx(8.15)
    assert tot.parallelism == pytest.approx(8.15 / 3.70)
    # b2 (first launch +0.12 to last finish +2.70) then c1 (+2.75 to +3.60)
    assert tot.critical_tasks == [B[2], C1]
    assert tot.critical_path == pytest.approx(2.58 + 0.85)
    # waiting: b 0.30+0.34+0.38+0.42, b2 again 0.15, c0 0.10, c1 0.15
    assert tot.waiting_time == pytest.approx(1.84)


def test_critical_path_of_the_green_run_ends_at_the_root():
    m = fold(sample_events(fail=False))
    lay = layers({t: r.deps for t, r in m.tasks.items()})
    length, path = critical_path(m.tasks, lay)
    assert path == [B[2], C1, D, ROOT]
    assert length == pytest.approx(2.58 + 1.05 + 0.48 + 0.19)


def test_report_data_has_times_relative_to_the_run_start():
    data = report_data(fold(sample_events()))
    tasks = {t["id"]: t for t in data["tasks"]}
    assert list(tasks) == [ROOT, D, C0, C1, *B, A]  # discovery order
    b2 = tasks[B[2]]
    assert b2["attempts"][0] == {
        "n": 1, "queued": None, "launched": 0.12, "started": 0.5, "finished": 1.2, "outcome": "retried",
        "where": "pid 4102",
        "reason": "killed: out of memory (exit 137); raise TaskB's memory hint", "failure_class": "OOMKilled",
        "exit_code": 137, "log_tail": ["loading 2 GB of features", "Killed"],
    }  # fmt: skip
    assert b2["critical"] and tasks[C1]["critical"] and not tasks[C0]["critical"]
    assert (tasks[A]["layer"], b2["layer"], tasks[C1]["layer"], tasks[D]["layer"], tasks[ROOT]["layer"]) == (
        0,
        1,
        2,
        3,
        4,
    )
    assert data["run"]["counts"] == {"succeeded": 5, "failed": 1, "upstream_failed": 2, "complete": 1}
    assert data["run"]["outcome"] == "failed"
    # b3 was ready with the others but queued for a slot from +0.05 until its launch at +0.13
    assert tasks[B[3]]["attempts"][0]["queued"] == 0.05 and tasks[B[3]]["attempts"][0]["launched"] == 0.13
    assert data["run"]["queue_time"] == 0.08


# -- the page ---------------------------------------------------------------------------------------------------
EVIL = "</script><script>alert('x')</script><img src=x onerror=alert(1)>&amp;\u2028"


def evil_events() -> list[Event]:
    evs = sample_events(run_id="run<b>" + EVIL, params_extra=EVIL)
    out = []
    for e in evs:
        if e.task_id == C1 and e.kind == "failed":
            e = Event(**{**e.__dict__, "reason": EVIL, "log_tail": (EVIL, "<!-- -->"), "family": "Task" + EVIL})
        out.append(e)
    return out


def test_everything_from_events_is_escaped():
    page = render_report(evil_events())
    assert "<script>alert" not in page
    assert "<img" not in page
    assert "\u2028" not in page
    assert page.count("<script") == 2  # the data block and the report's own script, nothing injected
    assert page.count("</script>") == 2
    data = embedded_data(page)
    # ... and the escaped data decodes back to exactly what the events said
    c0 = next(t for t in data["tasks"] if t["id"] == C0)
    assert c0["params"] == "param=c0" + EVIL
    c1 = next(t for t in data["tasks"] if t["id"] == C1)
    assert c1["family"] == "Task" + EVIL and c1["reason"] == EVIL
    assert c1["attempts"][0]["log_tail"] == [EVIL, "<!-- -->"]
    title = re.search(r"<title>(.*?)</title>", page, re.S)
    assert title and title.group(1).startswith("kannon run run&lt;b&gt;&lt;/script&gt;")


def _between(page: str, tag: str) -> str:
    m = re.search(rf"<{tag}>(.*?)</{tag}>", page, re.S)
    assert m
    return m.group(1)


def test_page_is_self_contained_and_locked_down_by_a_content_security_policy():
    page = render_report(sample_events())
    # nothing is fetched: no src/href attributes, no CSS imports or url()s
    assert not re.search(r"\s(src|href)\s*=", page, re.I)
    assert "@import" not in page and "url(" not in page
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert csp
    policy = csp.group(1).replace("&#x27;", "'")
    assert "default-src 'none'" in policy and "unsafe-inline" not in policy
    # the hashes allow exactly the inlined script and style, as written in the page
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        body = _between(page, tag)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in policy
    assert page.index("Content-Security-Policy") < page.index("<style>") < page.index("<script")


def test_page_sets_the_rendered_marker_only_from_its_script():
    page = render_report(sample_events())
    assert '<body data-rendered="no">' in page
    script = page[page.rindex("<script>") :]
    assert 'dataset.rendered = "ok"' in script and "dataset.taskCount" in script
    assert "innerHTML" not in script  # every string reaches the DOM through textContent/setAttribute


def test_write_report_from_an_event_log_with_a_torn_last_line(tmp_path: Path):
    log = tmp_path / "events.jsonl"
    el = EventLog(log)
    for e in sample_events():
        el.write(e)
    el.close()
    with log.open("a") as f:
        f.write('{"kind": "started", "run_id": "run-sam')  # a master killed mid-write
    out = write_report(log, tmp_path / "out" / "report.html")
    assert out == tmp_path / "out" / "report.html"
    data = embedded_data(out.read_text(encoding="utf-8"))
    assert len(data["tasks"]) == 9 and data["run"]["outcome"] == "failed"
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temporary file left behind
    assert list(read_events(log))[-1].kind == "run_finished"


def test_write_report_from_events_and_for_a_chosen_run(tmp_path: Path):
    evs = sample_events("run-1") + sample_events("run-2", fail=False, start=START + 100)
    latest = embedded_data(write_report(iter(evs), tmp_path / "a.html").read_text())
    chosen = embedded_data(write_report(evs, tmp_path / "b.html", run_id="run-1").read_text())
    assert latest["run"]["run_id"] == "run-2" and latest["run"]["outcome"] == "ok"
    assert chosen["run"]["run_id"] == "run-1" and chosen["run"]["outcome"] == "failed"


def test_empty_event_stream_still_renders():
    data = embedded_data(render_report([]))
    assert data["tasks"] == [] and data["run"]["outcome"] == "incomplete"


_kinds = st.sampled_from(
    ["run_started", "planned", "skipped_complete", "launched", "started", "succeeded", "failed", "retried",
     "cancelled", "upstream_failed", "run_finished"]
)  # fmt: skip


@st.composite
def event_streams(draw: st.DrawFn) -> list[Event]:
    ids = [f"{i:032x}" for i in range(draw(st.integers(1, 6)))]
    n = draw(st.integers(0, 40))
    evs = []
    t = START
    for _ in range(n):
        t += draw(st.floats(0, 5))
        tid = draw(st.sampled_from(ids))
        evs.append(
            Event(
                kind=draw(_kinds),
                run_id="r",
                time=t,
                task_id=tid,
                family=draw(st.sampled_from(["A", "B", None])),
                params=draw(st.one_of(st.none(), st.text(max_size=8))),
                placement=draw(st.sampled_from(["master", "bullet", "complete", "weird", None])),
                attempt=draw(st.one_of(st.none(), st.integers(1, 3))),
                where=draw(st.one_of(st.none(), st.text(max_size=6))),
                reason=draw(st.one_of(st.none(), st.text(max_size=8))),
                deps=tuple(draw(st.lists(st.sampled_from([*ids, "0" * 31 + "z"]), max_size=3))),
            )
        )
    return evs


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_streams())
def test_any_event_stream_renders_a_consistent_report(evs: list[Event]):
    """Event logs are untrusted input (other versions, crashes, hand edits): the report never fails on them."""
    page = render_report(evs)
    data = embedded_data(page)
    shown = last_run(evs)  # from the last run_started on
    ids = {e.task_id for e in shown if e.task_id and e.kind in TASK_KINDS}  # run-level kinds carry no task
    assert {t["id"] for t in data["tasks"]} == ids
    assert sum(data["run"]["counts"].values()) == len(ids)
    for t in data["tasks"]:
        assert all(d in ids for d in t["deps"])
        for a in t["attempts"]:
            assert a["outcome"] in {"waiting", "running", "succeeded", "failed", "retried", "cancelled", "lost"}
    assert data["run"]["task_time"] >= 0 and data["run"]["wall"] >= 0
