"""`kannon logs [--run N|ID] TASK [--attempt N]` prints an attempt's full log from the run directory; logs are
capped."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support.procs import kannon as run_kannon

PIPELINE = """
    from tests.support.tasks import Bullet, Join

    def flaky():
        return Bullet(name="flaky", fail_times=1, counter_dir={counter!r}, marker="MARK-flaky")

    def two():
        return Join(parents=[Bullet(name="a"), Bullet(name="b")])
"""

CHATTY = """
    import kannon

    class Chatty(kannon.TaskOnBullet[int]):
        def run(self):
            for i in range(20000):
                print(f"chatter {i:05d} " + "x" * 40)
            raise RuntimeError("the end of a chatty task")

    root = Chatty()
"""


def _write(tmp_path: Path, body: str) -> None:
    (tmp_path / "pipe.py").write_text(textwrap.dedent(body.replace("{counter!r}", repr(str(tmp_path)))))


def test_logs_prints_each_attempt_and_picks_runs(tmp_path: Path) -> None:
    _write(tmp_path, PIPELINE)
    first = run_kannon("build", "pipe.py:flaky", "--retries", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    one = run_kannon("logs", "Bullet", "--attempt", "1", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert "RuntimeError: planned failure of flaky" in one.stdout
    last = run_kannon("logs", "Bullet", cwd=tmp_path)  # the last attempt by default
    assert last.returncode == 0 and "MARK-flaky" in last.stdout and "planned failure" not in last.stdout

    second = run_kannon("build", "pipe.py:two", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    # the last run has two Bullets: the name alone is ambiguous, so the message lists them (one line, exit 2)
    amb = run_kannon("logs", "Bullet", cwd=tmp_path)
    assert amb.returncode == 2 and amb.stderr.count("\n") == 1 and "matches 2 tasks" in amb.stderr, amb.stderr
    assert "Traceback" not in amb.stderr
    # --run 1 is the first run (the flaky one); an id prefix works too
    again = run_kannon("logs", "--run", "1", "Bullet", "--attempt", "1", cwd=tmp_path)
    assert again.returncode == 0 and "planned failure of flaky" in again.stdout, again.stderr
    run_id = next(p.name for p in (tmp_path / "resources" / "kannon" / "runs").iterdir()
                  if any(p.glob("logs/**/Bullet-*-2.log")))  # fmt: skip
    by_id = run_kannon("logs", "--run", run_id[:6], "Bullet", cwd=tmp_path)
    assert by_id.returncode == 0 and "MARK-flaky" in by_id.stdout, by_id.stderr
    missing = run_kannon("logs", "Nope", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no log of a task 'Nope'" in missing.stderr


def test_a_chatty_tasks_log_is_capped_but_keeps_its_end(tmp_path: Path) -> None:
    _write(tmp_path, CHATTY)
    out = run_kannon("build", "pipe.py:root", cwd=tmp_path, env={"KANNON_LOG_CAP_BYTES": "65536"})
    assert out.returncode == 1, out.stderr
    (log,) = (tmp_path / "resources" / "kannon" / "runs").glob("*/logs/**/Chatty-*-1.log")
    text = log.read_text()
    assert "chatter 00000 " in text  # the beginning
    assert "[kannon: log capped at 65536 bytes: " in text
    assert text.rstrip().endswith("kannon-child: Chatty raised RuntimeError: the end of a chatty task")
    assert "RuntimeError: the end of a chatty task" in out.stderr  # the summary still shows the failure
    assert log.stat().st_size < 65536 + 65536 // 4 + 200  # 20000 lines of output were ~1 MB


STATUSY = """
    import kannon

    class Statusy(kannon.TaskOnBullet[int]):
        def run(self):
            print("own line before")
            self.set_status_message("halfway")
            self.set_progress_percentage(50)
            print("own line after")
            self.dump(1)

    root = Statusy()
"""


def test_logs_shows_the_tasks_output_without_kannons_status_lines(tmp_path: Path) -> None:
    # set_status_message travels as a marked line in the child's output (for the live view); the user's log view
    # shows what the task printed, as `gokart.build` would, not kannon's plumbing.
    _write(tmp_path, STATUSY)
    built = run_kannon("build", "pipe.py:root", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    shown = run_kannon("logs", "Statusy", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "own line before" in shown.stdout and "own line after" in shown.stdout
    assert "kannon-child-status" not in shown.stdout and "halfway" not in shown.stdout
