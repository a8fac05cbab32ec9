"""Plugins through real entry points, and the CLI's answers to bad input."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.support.procs import kannon


def test_backends_lists_builtins_and_the_third_party_plugin_with_their_origin(tmp_path: Path) -> None:
    out = kannon("backends", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert {"local", "docker", "kubernetes", "example"} <= set(lines)
    assert "kannon-example-plugin 0.1.0" in lines["example"]
    assert "(kannon " in lines["local"]


def test_a_pipeline_runs_through_a_plugin_backend_and_observer(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(textwrap.dedent("""
        from tests.support.tasks import Bullet, Join
        def root():
            return Join(parents=[Bullet(name="p1"), Bullet(name="p2")])
    """))
    seen = tmp_path / "observer.txt"
    out = kannon("build", "pipe.py:root", "--backend", "example", "--example-tag", "t1", "--events", "ev.jsonl",
                 cwd=tmp_path, env={"KANNON_EXAMPLE_EVENTS": str(seen)})  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    lines = seen.read_text().splitlines()
    assert lines[0] == "run_started -" and lines.count("succeeded Bullet") == 2 and lines[-1] == "run_finished -"
    started = [json.loads(x) for x in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert {e["where"] for e in started if e["kind"] == "started" and e["family"] == "Bullet"} == {
        e["where"] for e in started if e["kind"] == "started" and e["family"] == "Bullet" and
        e["where"].startswith("example pid ")}  # fmt: skip


def test_a_plugin_that_fails_to_import_is_reported_by_name(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "kannon_broken-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kannon-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[kannon]\nbroken = kannon_broken_plugin\n")
    (site / "kannon_broken_plugin.py").write_text("import a_module_that_does_not_exist\n")
    import os

    env = {"PYTHONPATH": f"{site}{os.pathsep}{os.environ['PYTHONPATH']}"}
    out = kannon("backends", cwd=tmp_path, env=env)
    assert out.returncode == 1
    assert "plugin 'broken'" in out.stderr and "kannon-broken" in out.stderr
    assert "ModuleNotFoundError" in out.stderr and "a_module_that_does_not_exist" in out.stderr
    assert "local" in out.stdout  # the others still load
    build = kannon("build", "x:y", "--backend", "broken", cwd=tmp_path, env=env)
    assert build.returncode == 2 and "failed to import" in build.stderr


def test_unknown_backend_lists_the_available_ones(tmp_path: Path) -> None:
    out = kannon("build", "pipe.py:root", "--backend", "nosuch", cwd=tmp_path)
    assert out.returncode == 2
    assert "unknown backend 'nosuch'" in out.stderr and "local" in out.stderr and "kubernetes" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_targets_and_config_are_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text("from tests.support.tasks import Leaf\nnot_a_task = 3\nroot = Leaf\n")
    cases = {
        ("pipe.py:not_a_task",): "not a gokart task instance",
        ("pipe.py:root",): "is the class Leaf",
        ("pipe.py:missing",): "has no attribute 'missing'",
        ("nofile.py:root",): "does not exist",
        ("no_such_module:root",): "cannot import 'no_such_module'",
        ("justtext",): "must look like",
        ("pipe.py:root", "--config", "missing.ini"): "config file missing.ini does not exist",
    }
    for args, needle in cases.items():
        out = kannon("build", *args, cwd=tmp_path)
        assert out.returncode == 2, (args, out.stderr)
        assert needle in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr


def test_plan_shows_the_tree_and_runs_nothing(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    out = kannon("plan", f"{repo}/examples/quickstart/pipeline.py:root", "--workspace", "ws", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "TaskG" in out.stdout and "bullet" in out.stdout and "master" in out.stdout
    assert not (tmp_path / "ws").exists() or not list((tmp_path / "ws").rglob("*.pkl"))
    as_json = json.loads(kannon("plan", f"{repo}/examples/quickstart/pipeline.py:root", "--format", "json",
                                cwd=tmp_path).stdout)  # fmt: skip
    assert len(as_json["nodes"] if isinstance(as_json, dict) else as_json) == 13


def test_workspace_option_is_applied_before_the_target_is_imported(tmp_path: Path) -> None:
    (tmp_path / "modlevel.py").write_text(textwrap.dedent("""
        from tests.support.tasks import Bullet
        root = Bullet(name="module-level")   # constructed at import time: must already see --workspace
    """))
    out = kannon("build", "modlevel.py:root", "--workspace", "elsewhere", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert list((tmp_path / "elsewhere").rglob("Bullet_*.pkl"))
    assert not (tmp_path / "resources" / "tests").exists()


def test_a_plan_error_exits_2_before_launching(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(textwrap.dedent("""
        from tests.support.tasks import Bullet, Untyped
        def root():
            return Bullet(name="x", parents=[Untyped(value=object())]).with_hints(memory="a lot")
    """))
    out = kannon("build", "pipe.py:root", cwd=tmp_path)
    assert out.returncode == 2
    assert "2 problem(s) before launching anything" in out.stderr
    assert "memory 'a lot'" in out.stderr and "cannot be handed to a child" in out.stderr
    assert not (tmp_path / "resources" / "kannon").exists() or not list((tmp_path / "resources").rglob("*.log"))
