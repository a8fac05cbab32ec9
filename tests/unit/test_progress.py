from __future__ import annotations

import io
import json
import re
import threading
from pathlib import Path

import pluggy
import pytest
from rich.console import Console

from kannon import hookspecs
from kannon.backends.base import RunInfo
from kannon.events import Event, read_events
from kannon.progress import (
    EventLogObserver,
    ProgressObserver,
    ReportObserver,
    clean,
    summary_renderable,
    summary_text,
)
from kannon.report import render_report
from kannon.report.model import fold
from kannon.report.sample import START, sample_events, task_id
from kannon.result import Attempt, BuildResult, Placement, Status, TaskRecord

RUN = RunInfo(run_id="run-sample", run_dir=Path("."))


def plain(**kw: object) -> tuple[ProgressObserver, io.StringIO]:
    buf = io.StringIO()
    obs = ProgressObserver(Console(file=buf, force_terminal=False, width=200), **kw)  # type: ignore[arg-type]
    assert not obs.live_mode  # not a terminal -> plain lines
    return obs, buf


def manager(*observers: object) -> pluggy.PluginManager:
    """A real pluggy manager with kannon's hookspecs: registering validates the hookimpl signatures."""
    pm = pluggy.PluginManager("kannon")
    pm.add_hookspecs(hookspecs)
    for o in observers:
        pm.register(o)
    return pm


def run_through(pm: pluggy.PluginManager, events: list[Event]) -> BuildResult:
    pm.hook.kannon_run_start(run=RUN, backend="local")
    for e in events:
        pm.hook.kannon_event(event=e)
    result = fold(events).result()
    pm.hook.kannon_run_end(run=RUN, result=result)
    return result


def test_plain_lines_say_what_happened_to_each_task_in_order():
    obs, buf = plain()
    run_through(manager(obs), sample_events())
    lines = buf.getvalue().splitlines()
    b0, b2, c1, d = task_id("TaskB0"), task_id("TaskB2"), task_id("TaskC1"), task_id("TaskD")
    assert lines[0] == "kannon: run run-sample started on local"
    assert lines[1] == "kannon: planned 9 task(s): 6 bullet, 2 master, 1 already complete"
    assert lines[2] == f"kannon: launched TaskB(param=b0) [{b0[:8]}] attempt 1 on local"
    assert f"kannon: started TaskB(param=b0) [{b0[:8]}] attempt 1 on local (pid 4100)" in lines
    assert f"kannon: succeeded TaskB(param=b0) [{b0[:8]}] attempt 1 on local (pid 4100) in 1.2s [2/9 done]" in lines
    retry = next(x for x in lines if x.startswith("kannon: retrying"))
    assert retry == (
        f"kannon: retrying TaskB(param=b2) [{b2[:8]}]: attempt 1 failed on local (pid 4102): "
        "killed: out of memory (exit 137); raise TaskB's memory hint (exit code 137)"
    )
    assert lines.index(retry) < lines.index(f"kannon: started TaskB(param=b2) [{b2[:8]}] attempt 2 on local (pid 4110)")
    assert (
        f"kannon: FAILED TaskC(param=c1) [{c1[:8]}] attempt 1 on local (pid 4121): "
        "TaskC.run raised ValueError: column 'c1' is empty (exit code 6) [6/9 done]"
    ) in lines
    assert f"kannon: not run TaskD(n=2) [{d[:8]}]: needs TaskC {c1[:8]}, which failed" in lines
    # the last state is said once, by the summary's headline, right after the last task line
    end = lines.index(
        "kannon: run run-sample FAILED in 3.7s on local: 1 failed, 2 upstream failed, 5 succeeded, 1 complete"
    )
    assert lines[end - 1] == f"kannon: not run Report [{task_id('Report')[:8]}]: needs TaskD {d[:8]}, which was not run"
    assert not any("finished" in x for x in lines)
    # the run is announced once even though both the hook and the run_started event report it
    assert sum(x.startswith("kannon: run run-sample started") for x in lines) == 1


def test_master_tasks_get_a_started_line_but_no_launched_line():
    obs, buf = plain()
    run_through(manager(obs), sample_events(fail=False))
    out = buf.getvalue()
    d = task_id("TaskD")
    assert f"kannon: started TaskD(n=2) [{d[:8]}] attempt 1 on master\n" in out
    assert f"launched TaskD(n=2) [{d[:8]}]" not in out
    assert "\nkannon: run run-sample ok in 4.5s on local: 8 succeeded, 1 complete\n" in out


def tiny_run() -> list[Event]:
    """One bullet that succeeds: the smallest whole run."""
    tid = "a" * 32
    task = {"task_id": tid, "family": "TaskTiny", "params": "n=1", "placement": "bullet"}
    return [
        Event("run_started", "run-sample", time=START, backend="local"),
        Event("planned", "run-sample", time=START + 0.01, **task),  # type: ignore[arg-type]
        Event("launched", "run-sample", time=START + 0.1, attempt=1, backend="local", **task),  # type: ignore[arg-type]
        Event("started", "run-sample", time=START + 0.2, attempt=1, where="pid 7", **task),  # type: ignore[arg-type]
        Event("succeeded", "run-sample", time=START + 1.2, attempt=1, where="pid 7", **task),  # type: ignore[arg-type]
        Event("run_finished", "run-sample", time=START + 1.3, reason="ok", counts={"succeeded": 1}),
    ]


TINY_LINES = """\
kannon: run run-sample started on local
kannon: planned 1 task(s): 1 bullet, 0 master, 0 already complete
kannon: launched TaskTiny(n=1) [aaaaaaaa] attempt 1 on local
kannon: started TaskTiny(n=1) [aaaaaaaa] attempt 1 on local (pid 7)
kannon: succeeded TaskTiny(n=1) [aaaaaaaa] attempt 1 on local (pid 7) in 1.0s [1/1 done]
"""


def test_the_end_of_a_run_is_said_once_by_the_summary_headline():
    obs, buf = plain()
    run_through(manager(obs), tiny_run())
    assert buf.getvalue() == TINY_LINES + (
        "kannon: run run-sample ok in 1.3s on local: 1 succeeded\n"
        "OUTCOME    TASK                      WHERE          ATTEMPTS  DURATION  REASON\n"
        "succeeded  TaskTiny(n=1) [aaaaaaaa]  local (pid 7)  1         1.1s\n"
    )


def test_without_a_summary_the_finished_line_says_the_end():
    obs, buf = plain(summary=False)
    run_through(manager(obs), tiny_run())
    assert buf.getvalue() == TINY_LINES + "kannon: run run-sample finished: ok in 1.3s (1 succeeded)\n"


def test_a_run_that_finished_but_never_reached_run_end_still_says_its_end_on_close():
    obs, buf = plain()
    pm = manager(obs)
    pm.hook.kannon_run_start(run=RUN, backend="local")
    for e in tiny_run():
        pm.hook.kannon_event(event=e)
    obs.close()
    obs.close()
    assert buf.getvalue() == TINY_LINES + "kannon: run run-sample finished: ok in 1.3s (1 succeeded)\n"


def test_on_a_terminal_the_end_is_said_once_by_the_table_title():
    buf = io.StringIO()
    obs = ProgressObserver(Console(file=buf, force_terminal=True, width=160), refresh_per_second=100)
    pm = manager(obs)
    run_through(pm, tiny_run())
    # (the stream also holds the live view's renders, each erased by the next or when the view stops)
    lines = [x.strip() for x in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue()).splitlines()]
    assert not any("finished" in x for x in lines)
    headline = "kannon: run run-sample ok in 1.3s on local: 1 succeeded"
    assert lines.count(headline) == 1
    # the table's title says the last state, and nothing but the table follows it
    assert [x.split() for x in lines[lines.index(headline) + 1 :] if x.strip("─")] == [
        ["outcome", "task", "where", "tries", "time", "reason"],
        ["succeeded", "TaskTiny(n=1)", "[aaaaaaaa]", "local", "(pid", "7)", "1", "1.1s"],
    ]


def test_summary_lists_failures_first_with_reason_and_log_tail():
    obs, buf = plain()
    run_through(manager(obs), sample_events())
    out = buf.getvalue()
    summary = out[out.index("kannon: run run-sample FAILED") :]
    rows = summary.splitlines()
    assert (
        rows[0]
        == "kannon: run run-sample FAILED in 3.7s on local: 1 failed, 2 upstream failed, 5 succeeded, 1 complete"
    )
    assert rows[1].split() == ["OUTCOME", "TASK", "WHERE", "ATTEMPTS", "DURATION", "REASON"]
    outcomes = [r.split()[0] for r in rows[2:11]]
    assert outcomes == ["failed", "upstream_failed", "upstream_failed"] + ["succeeded"] * 5 + ["complete"]
    assert "TaskC(param=c1)" in rows[2] and "(exit code 6)" in rows[2]
    b2_row = next(r for r in rows if "TaskB(param=b2)" in r)
    assert re.search(r"\(pid 4110\)\s+2\s+2\.6s\s*$", b2_row)  # attempts, duration from first launch to last finish
    assert "  log:" in rows and rows[rows.index("  log:") + 1] == "    | ValueError: column 'c1' is empty"
    assert "    | ValueError: column 'c1' is empty" in rows


def test_summary_collapses_many_green_rows_but_never_failures():
    tasks = {}
    for i in range(30):
        tid = f"{i:032x}"
        status = Status.FAILED if i in (7, 21) else Status.SUCCEEDED
        rec = TaskRecord(
            tid, "T", f"i={i}", Placement.BULLET, status, reason="boom" if status == Status.FAILED else None
        )
        rec.attempts.append(Attempt(1, START, START + 1, START + 2, exit_code=6 if status == Status.FAILED else 0))
        tasks[tid] = rec
    result = BuildResult("r", "local", tasks, f"{0:032x}", START, START + 5)
    text = summary_text(result, max_rows=10)
    rows = [r for r in text.splitlines() if r.startswith(("failed", "succeeded"))]
    assert [r.split()[0] for r in rows] == ["failed", "failed"] + ["succeeded"] * 8
    assert "... and 20 more succeeded/complete task(s) (see --events / --report for all)" in text
    assert len(summary_text(result, max_rows=None).splitlines()) > len(text.splitlines())


def test_summary_table_on_a_terminal_shows_every_task():
    result = fold(sample_events()).result()
    c = Console(file=io.StringIO(), width=160, record=True)
    c.print(summary_renderable(result))
    out = c.export_text()
    for rec in result.tasks.values():
        assert rec.task_id[:8] in out
    assert out.index("TaskC(param=c1)") < out.index("TaskB(param=b0)")  # failures first
    assert "upstream failed" in out
    assert "| ValueError: column 'c1' is empty" in out and "Traceback" not in out


def test_params_and_log_lines_cannot_inject_markup_or_terminal_escapes():
    obs, buf = plain(follow_logs=True)
    evs = sample_events(params_extra=" [bold red]x[/] \x1b[2J\x1b]0;title\x07")
    pm = manager(obs)
    pm.hook.kannon_run_start(run=RUN, backend="local")
    for e in evs:
        pm.hook.kannon_event(event=e)
    obs.log_line("TaskC c0 1d9b", "\x1b[31mred\x1b[0m [link=http://x]y[/link]\r\n")
    out = buf.getvalue()
    assert "\x1b" not in out and "\x07" not in out
    assert "TaskC(param=c0 [bold red]x[/] ) [" in out  # markup printed literally, escapes gone
    assert "[TaskC c0 1d9b] red [link=http://x]y[/link]\n" in out
    assert clean("a\nb\tc\u2028d") == "a b c d"


def test_log_lines_are_prefixed_per_task_only_when_following_logs():
    obs, buf = plain(follow_logs=True)
    obs.log_line("TaskB b0 5729", "hello")
    obs.log_line("TaskB b1 5ce8", "world")
    assert buf.getvalue() == "[TaskB b0 5729] hello\n[TaskB b1 5ce8] world\n"
    quiet, qbuf = plain(follow_logs=False)
    quiet.log_line("TaskB b0 5729", "hello")
    assert qbuf.getvalue() == ""


def test_live_view_shows_counts_and_running_tasks_with_elapsed_time():
    obs = ProgressObserver(Console(file=io.StringIO(), width=160), live=True, clock=lambda: START + 2.97)
    for e in sample_events():
        if e.time <= START + 2.0:
            obs.kannon_event(event=e)
    c = Console(file=io.StringIO(), width=160, record=True)
    c.print(obs.render_live())
    out = c.export_text().splitlines()
    obs.close()
    # b0, b1 and the complete TaskA are done; b2 (2nd attempt), b3 and c0 run; c1, D and the root wait
    assert out[0] == "kannon run-sample on local  3.0s  3/9 done  3 running  3 pending  0 failed  1 retry"
    assert out[1].split() == ["running", "attempt", "where", "state", "for"]
    rows = {r.split()[0]: r.split()[1:] for r in out[2:]}
    assert rows["TaskB(param=b2)"] == ["[957f2313]", "2", "local", "(pid", "4110)", "running", "1.6s"]
    assert rows["TaskC(param=c0)"] == ["[1d9b8469]", "1", "local", "waiting", "1.0s"]
    assert len(rows) == 3


def test_live_view_counts_tasks_queued_for_a_slot():
    obs = ProgressObserver(Console(file=io.StringIO(), width=160), live=True, clock=lambda: START + 0.12)
    for e in sample_events():
        if e.time <= START + 0.12:  # b3 queued at +0.05, launched at +0.13
            obs.kannon_event(event=e)
    c = Console(file=io.StringIO(), width=160, record=True)
    c.print(obs.render_live())
    obs.close()
    assert c.export_text().splitlines()[0] == (
        "kannon run-sample on local  0.1s  1/9 done  3 running  5 pending (1 queued for a slot)  0 failed")


def test_live_view_marks_tasks_still_waiting_for_their_process():
    obs = ProgressObserver(Console(file=io.StringIO(), width=160), live=True, clock=lambda: START + 0.3)
    for e in sample_events():
        if e.time <= START + 0.3:
            obs.kannon_event(event=e)
    c = Console(file=io.StringIO(), width=160, record=True)
    c.print(obs.render_live())
    obs.close()
    rows = [x for x in c.export_text().splitlines() if x.startswith("TaskB")]
    assert len(rows) == 4
    assert all(r.split()[-2] == "waiting" for r in rows)
    assert rows[0].split()[-1] == "0.2s"  # launched at +0.10


def test_terminal_mode_prints_failures_and_logs_above_the_live_view_and_ends_with_the_table():
    buf = io.StringIO()
    obs = ProgressObserver(Console(file=buf, force_terminal=True, width=160), follow_logs=True)
    assert obs.live_mode
    pm = manager(obs)
    pm.hook.kannon_run_start(run=RUN, backend="local")
    assert obs._live is not None and obs._live.is_started
    evs = sample_events()
    for e in evs:
        pm.hook.kannon_event(event=e)
        if e.kind == "started":
            obs.log_line(f"{e.family} {e.task_id[:4]}", f"working on {e.params}")
    pm.hook.kannon_run_end(run=RUN, result=fold(evs).result())
    assert obs._live is None
    out = buf.getvalue()
    assert "working on param=b0" in out
    assert "kannon: FAILED TaskC(param=c1)" in out
    assert "kannon: retrying TaskB(param=b2)" in out
    assert "kannon: started TaskB" not in out  # on a terminal the live view, not lines, shows progress
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    header = re.search(r"^ ?outcome +task +where +tries +time +reason", text, re.M)
    assert header and header.start() > text.rindex("kannon: FAILED")  # the summary table comes last


def test_live_view_survives_concurrent_events_logs_and_refreshes():
    """Events and log lines from several threads while rich's refresh thread redraws: no deadlock, no error."""
    # a fast redraw rate so rich's refresh thread really contends with the event threads
    obs = ProgressObserver(
        Console(file=io.StringIO(), force_terminal=True, width=120), follow_logs=True, refresh_per_second=500
    )
    obs.kannon_run_start(run=RUN, backend="local")
    errors: list[BaseException] = []

    def feed(offset: int) -> None:
        try:
            for i in range(300):
                tid = f"{offset:04d}{i:028d}"
                for kind in ("planned", "launched", "started", "succeeded"):
                    obs.kannon_event(
                        event=Event(
                            kind,
                            "run-sample",
                            task_id=tid,
                            family="T",
                            params=f"i={i}",
                            placement="bullet",
                            attempt=1 if kind != "planned" else None,
                        )
                    )
                obs.log_line(f"T {tid[:4]}", f"line {i}")
                obs.render_live()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=feed, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "progress observer deadlocked"
    closer = threading.Thread(target=obs.close)
    closer.start()
    closer.join(timeout=60)
    assert not closer.is_alive()
    assert errors == []
    assert obs.model.counts() == {"succeeded": 900}


def test_event_log_observer_writes_every_event_and_reopens_after_the_run(tmp_path: Path):
    path = tmp_path / "logs" / "events.jsonl"
    obs = EventLogObserver(path)
    pm = manager(obs)
    evs = sample_events()
    run_through(pm, evs)
    assert list(read_events(path)) == evs
    late = Event("cancelled", "run-sample", time=START + 10, task_id=task_id("TaskD"), reason="late")
    pm.hook.kannon_event(event=late)
    obs.close()
    assert list(read_events(path))[-1] == late
    assert len(path.read_text().splitlines()) == len(evs) + 1


def test_observers_register_with_kannons_hookspecs():
    """pluggy rejects hookimpls whose names or arguments do not match a hookspec; this must not raise."""
    obs, _ = plain()
    pm = manager(obs, EventLogObserver("unused.jsonl"))
    names = {impl.function.__name__ for hook in (pm.hook.kannon_event, pm.hook.kannon_run_end)
             for impl in hook.get_hookimpls()}  # fmt: skip
    assert names == {"kannon_event", "kannon_run_end"}
    assert len(pm.hook.kannon_event.get_hookimpls()) == 2


@pytest.mark.parametrize("kind", ["failed", "cancelled"])
def test_a_task_that_ends_without_any_attempt_still_gets_a_line(kind: str):
    obs, buf = plain()
    tid = "f" * 32
    obs.kannon_event(event=Event("planned", "r", task_id=tid, family="T", params="", placement="bullet"))
    obs.kannon_event(event=Event(kind, "r", task_id=tid, reason="could not write the hand-off spec"))  # type: ignore[arg-type]
    last = buf.getvalue().splitlines()[-1]
    assert last.startswith(f"kannon: {'FAILED' if kind == 'failed' else 'cancelled'} T [ffffffff]")
    assert "could not write the hand-off spec" in last


def test_log_lines_arrive_through_the_kannon_task_log_hook():
    obs, buf = plain(follow_logs=True)
    pm = manager(obs)
    pm.hook.kannon_task_log(task_id="a" * 32, label="TaskB aaaaaaaa", line="epoch 1/3\n")
    assert buf.getvalue() == "[TaskB aaaaaaaa] epoch 1/3\n"


def test_report_observer_writes_the_report_when_the_run_ends(tmp_path: Path):
    out = tmp_path / "report.html"
    obs = ReportObserver(out)
    evs = sample_events()
    run_through(manager(obs), evs)
    assert obs.written == out
    page = out.read_text(encoding="utf-8")
    assert page == render_report(evs)  # the same page `kannon report EVENTS.jsonl` would give


def test_report_observer_close_writes_what_was_seen_if_the_run_never_ended(tmp_path: Path):
    out = tmp_path / "partial.html"
    obs = ReportObserver(out)
    pm = manager(obs)
    for e in sample_events()[:10]:
        pm.hook.kannon_event(event=e)
    assert not out.exists()
    obs.close()
    assert '"outcome":"incomplete"' in out.read_text(encoding="utf-8")


def test_summary_lists_tasks_of_one_outcome_in_launch_order():
    text = summary_text(fold(sample_events(fail=False)).result())
    order = [line.split()[1] for line in text.splitlines()[2:11]]
    assert order == ["TaskB(param=b0)", "TaskB(param=b1)", "TaskB(param=b2)", "TaskB(param=b3)", "TaskC(param=c0)",
                     "TaskC(param=c1)", "TaskD(n=2)", "Report", "TaskA"]  # fmt: skip


def test_an_observer_reused_for_a_second_build_starts_afresh(tmp_path: Path):
    obs, buf = plain()
    report = ReportObserver(tmp_path / "r.html")
    pm = manager(obs, report)
    run_through(pm, sample_events())
    first = buf.getvalue()
    run_through(pm, sample_events(fail=False, start=START + 100))
    second = buf.getvalue()[len(first) :]
    assert second.startswith("kannon: run run-sample started on local\n")
    assert "[9/9 done]" in second and "FAILED" not in second
    assert obs.model.counts() == {"succeeded": 8, "complete": 1}
    assert report.written is not None and '"outcome":"ok"' in report.written.read_text()
    assert len(report.events) == len(sample_events(fail=False))


def test_follow_logs_from_the_python_api_prints_each_child_line(capsys):
    """Kannon(follow_logs=True) registers log_printers(observers, follow_logs) next to its observers, then the core
    calls the kannon_task_log hook per LogLine: every line reaches stderr with its task prefix."""
    from kannon.plugins import plugin_manager
    from kannon.progress import LogPrinter, log_printers

    assert log_printers([], follow_logs=False) == []
    assert log_printers([ProgressObserver(follow_logs=True)], follow_logs=True) == []  # the CLI prints them itself
    (printer,) = log_printers([ProgressObserver(follow_logs=False)], follow_logs=True)
    assert isinstance(printer, LogPrinter)
    pm = plugin_manager()
    pm.register(printer)
    try:
        pm.hook.kannon_task_log(task_id="a" * 32, label="TaskC aaaaaaaa", line="epoch 3 loss=0.1\n")
        pm.hook.kannon_task_log(task_id="a" * 32, label="TaskC aaaaaaaa", line="\x1b[2Jdone")
    finally:
        pm.unregister(printer)
    assert capsys.readouterr().err == "[TaskC aaaaaaaa] epoch 3 loss=0.1\n[TaskC aaaaaaaa] done\n"


def _admission_events(finished: bool) -> list[Event]:
    """One bullet whose Job Kueue holds 60 s (the reason arrives a moment later), then runs."""
    t = task_id("Queued")
    evs = [Event("run_started", "run-q", START, backend="kubernetes"),
           Event("planned", "run-q", START, task_id=t, family="Queued", placement="bullet"),
           Event("launched", "run-q", START + 1, task_id=t, family="Queued", placement="bullet", attempt=1),
           Event("admission_wait", "run-q", START + 2, task_id=t, family="Queued", placement="bullet", attempt=1),
           Event("admission_wait", "run-q", START + 3, task_id=t, family="Queued", placement="bullet", attempt=1,
                 reason="insufficient quota for cpu in ClusterQueue team-a")]  # fmt: skip
    if finished:
        evs += [Event("admitted", "run-q", START + 62, task_id=t, family="Queued", placement="bullet", attempt=1,
                      waited=60.0),
                Event("started", "run-q", START + 63, task_id=t, family="Queued", placement="bullet", attempt=1,
                      where="pod q-1"),
                Event("succeeded", "run-q", START + 70, task_id=t, family="Queued", placement="bullet", attempt=1,
                      where="pod q-1"),
                Event("run_finished", "run-q", START + 71, reason="ok", counts={"succeeded": 1})]  # fmt: skip
    return evs


def test_admission_waits_reach_the_plain_lines_the_live_view_the_summary_and_the_report() -> None:
    obs, buf = plain()
    for e in _admission_events(finished=True):
        obs.kannon_event(event=e)
    lines = buf.getvalue()
    assert "waits for admission: insufficient quota for cpu in ClusterQueue team-a" in lines
    assert "admitted after 1m00s" in lines

    live = ProgressObserver(Console(file=io.StringIO(), width=160), live=True, clock=lambda: START + 30)
    for e in _admission_events(finished=False):
        live.kannon_event(event=e)
    c = Console(file=io.StringIO(), width=160, record=True)
    c.print(live.render_live())
    live.close()
    assert "1 running (1 waiting for admission)" in c.export_text().splitlines()[0]

    model = fold(_admission_events(finished=True))
    (att,) = next(iter(model.tasks.values())).attempts
    assert att.admission_wait == 60.0 and att.admission_reason == "insufficient quota for cpu in ClusterQueue team-a"
    page = render_report(_admission_events(finished=True))
    found = re.search(r'<script type="application/json" id="kannon-data">(.*?)</script>', page, re.S)
    assert found is not None
    data = json.loads(found.group(1))
    assert data["run"]["admission_time"] == 60.0
    (shown,) = data["tasks"][0]["attempts"]
    assert shown["admission_wait"] == 60.0 and shown["admission_reason"].startswith("insufficient quota")


def test_live_view_is_rebuilt_at_a_bounded_rate_whatever_the_event_rate():
    """Issue 16: a burst of 10,000 events, a third of them lines printed above the live view, while rich's timer
    redraws it: the view is built at most once per 0.8 / refresh_per_second s of the (fake) frame clock, so the
    number of builds follows the clock, not the events. (rich itself only asks for a new view on its timer and
    redraws the last one under a printed line; the bound holds whoever asks.)"""
    now = [100.0]
    out = io.StringIO()
    obs = ProgressObserver(Console(file=out, force_terminal=True, width=160), live=True,
                           refresh_per_second=4, frame_clock=lambda: now[0], clock=lambda: START + now[0])  # fmt: skip
    drawn = 0
    render = obs.render_live

    def counting() -> object:
        nonlocal drawn
        drawn += 1
        return render()

    obs.render_live = counting  # type: ignore[method-assign]
    obs.kannon_run_start(run=RUN, backend="local")
    n, step = 2_500, 0.0004  # 10,000 events over 4 s of the frame clock
    for i in range(n):
        tid = f"{i:032x}"
        common = {"task_id": tid, "family": "T", "params": f"i={i}", "placement": "bullet"}
        obs.kannon_event(event=Event("planned", "run-sample", time=START + now[0], **common))  # type: ignore[arg-type]
        for kind in ("launched", "started", "retried" if i % 3 else "failed"):
            now[0] += step
            obs.kannon_event(event=Event(kind, "run-sample", time=START + now[0], attempt=1, **common))  # type: ignore[arg-type]
            obs.live_frame()  # as if something asked for the view after every event
        now[0] += step
    obs.close()
    assert out.getvalue().count("kannon: FAILED") == len(range(0, n, 3))  # the lines did go above the view
    elapsed = n * 4 * step
    assert 1 <= drawn <= 1 + int(elapsed * 4 / 0.8) + 1, drawn  # the first frame, one per 0.2 s, and the last
    assert obs.frames_built == drawn
