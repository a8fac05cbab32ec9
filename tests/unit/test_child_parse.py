"""The child's argument parsing: the fast path for what the master builds, argparse for everything else."""

from __future__ import annotations

import pytest

from kannon import child, handoff


def test_the_masters_own_argv_parses_to_the_same_values_as_argparse() -> None:
    args = handoff.child_args("/path with space/spec.json", "abc123", "f" * 64)[1:]
    fast = child.parse_args(args)
    # the same argv with an equivalent spelling only argparse understands
    slow = child.parse_args([f"--spec={args[1]}", "--task-id", args[3], "--sha256", args[5]])
    assert vars(fast) == vars(slow) == {"spec": "/path with space/spec.json", "task_id": "abc123", "sha256": "f" * 64}


@pytest.mark.parametrize(
    "argv",
    [
        ["--spec", "s", "--task-id", "t"],  # missing --sha256
        ["--task-id", "t", "--spec", "s", "--sha256"],
        ["--spec", "--task-id", "--task-id", "t", "--sha256", "h"],  # a flag where a value belongs
    ],
)
def test_anything_else_gets_argparse_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        child.parse_args(argv)
    assert e.value.code == 2
