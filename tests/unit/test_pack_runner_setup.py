"""``kannon run-pack`` refusing to start: one line saying what to do, exit 2, nothing forked (the members' own runs
are tested in tests/e2e/test_pack_runner.py)."""

from __future__ import annotations

import os
import tempfile

import pytest

from kannon.pack import protocol, runner


def test_no_writable_temporary_directory_is_one_line_naming_the_fix(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A pod with a read-only root filesystem and no emptyDir at /tmp: the members' records have nowhere to go."""
    def read_only(*args: object, **kwargs: object) -> str:
        raise OSError(30, "Read-only file system", "/tmp/kannon-pack-x")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    monkeypatch.setenv(protocol.PACK_ENV, protocol.encode([protocol.Member(("run-task", "--spec", "x"))]))
    forks: list[int] = []
    monkeypatch.setattr(os, "fork", lambda: forks.append(1) or 0)
    assert runner.main([]) == runner.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Read-only file system" in err[0] and "TMPDIR" in err[0], err
    assert err[0].startswith("kannon-child: ")  # the pack's classified reason, as a child's own line is
    assert forks == []
