"""Helpers for the Docker e2e tests: a test-only executor running plain Python (the event recorder is in
tests/support/events.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from kannon.backends.base import Launch
from kannon.backends.docker import DockerExecutor
from kannon.hints import Hints

REPO = Path(__file__).resolve().parents[3]


def python_volumes() -> list[str]:
    """The venv, its base interpreter and this checkout (the editable install points there), read-only."""
    paths = dict.fromkeys([sys.prefix, sys.base_prefix, str(REPO)])
    return [f"{p}:{p}:ro" for p in paths]


class ScriptExecutor(DockerExecutor):
    """Test-only: runs ``python -c <child_args[0]>`` instead of the kannon child, to test the container plumbing."""

    def command(self, launch: Launch) -> list[str]:
        return [self.python, "-c", launch.child_args[0]]


def script_launch(run_id: str, tmp_path: Path, n: int, code: str, hints: Hints = Hints(),
                  env: dict[str, str] | None = None, attempt: int = 1) -> Launch:  # fmt: skip
    task_id = f"{n:032x}"
    return Launch(
        key=f"{task_id}-{attempt}", run_id=run_id, task_id=task_id, family=f"Script{n}", attempt=attempt,
        child_args=(code,), env=env or {}, hints=hints,
        log_path=tmp_path / "run" / "logs" / f"Script{n}-{attempt}.log",
    )  # fmt: skip
