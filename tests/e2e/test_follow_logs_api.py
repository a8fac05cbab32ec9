"""``Kannon(follow_logs=True)`` through the Python API prints each child's output, as the CLI's flag does."""

from __future__ import annotations

import pytest

import kannon
from kannon.backends.local import LocalExecutor
from tests.support.tasks import Bullet


@pytest.mark.parametrize("follow", [True, False])
def test_follow_logs_from_the_api_prints_child_lines(follow: bool, capfd: pytest.CaptureFixture[str]) -> None:
    marker = f"hello-from-the-child-{follow}"
    kannon.Kannon(executor=LocalExecutor(), follow_logs=follow).build(Bullet(name="talker", marker=marker))
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if marker in line]
    if follow:
        # one prefixed line per child line, not two (the API must not double what an observer already prints)
        assert len(lines) == 1, err
        assert lines[0].startswith("[Bullet "), lines[0]
    else:
        assert lines == [], err
