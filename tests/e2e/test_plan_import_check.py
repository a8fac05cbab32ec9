"""`kannon plan` is the dry run of `kannon build`: a bullet module a child of the chosen backend cannot import is
the same exit 2 with the same line there (issue 18 point 6), before anything would run."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support.procs import kannon as run_kannon

SIDE = """
    import kannon
    import plan_helper  # found only through the master's own sys.path edit (not beside this module)

    class PlanSideBullet(kannon.TaskOnBullet[str]):
        def run(self):
            self.dump("ran")
"""


def _pipeline(tmp_path: Path) -> Path:
    side = tmp_path / "side"
    side.mkdir()
    (side / "plan_side_bullets.py").write_text(textwrap.dedent(SIDE))
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    (helpers / "plan_helper.py").write_text("GREETING = 'hi'\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "pipe.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(side)!r}, {str(helpers)!r}]  # the master's own sys.path edits, as a script would make
        import plan_side_bullets
        root = plan_side_bullets.PlanSideBullet()
    """))
    return work


def test_plan_refuses_what_build_would_refuse_in_spawn_mode(tmp_path: Path) -> None:
    work = _pipeline(tmp_path)
    plan = run_kannon("plan", "pipe.py:root", "--local-mode", "spawn", cwd=work)
    build = run_kannon("build", "pipe.py:root", "--local-mode", "spawn", cwd=work)
    assert plan.returncode == 2 and build.returncode == 2, (plan.stderr, build.stderr)
    line = [x for x in plan.stderr.splitlines() if "PlanSideBullet" in x]
    assert line and "cannot be imported by a child started afresh" in line[0] and "Traceback" not in plan.stderr
    assert line[0] in build.stderr  # the very same line
    assert not (work / "resources").exists() or not any((work / "resources").rglob("*.pkl"))


def test_plan_passes_in_fork_mode_where_the_child_inherits_the_modules(tmp_path: Path) -> None:
    work = _pipeline(tmp_path)
    plan = run_kannon("plan", "pipe.py:root", cwd=work)
    assert plan.returncode == 0, plan.stderr
    assert "PlanSideBullet" in plan.stdout
