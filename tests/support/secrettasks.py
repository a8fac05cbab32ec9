"""A bullet that reports the environment its child process sees (tests of issue 12: secrets and the child env)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import luigi

import kannon


class EnvProbe(kannon.TaskOnBullet[dict]):  # type: ignore[type-arg]
    """Dumps ``{name: value or None}`` for ``names`` (and whether kannon's secrets-file pointer is still set).

    With ``started_file``/``wait_file``: touches the first, then waits for the second (the test inspects the running
    child meanwhile)."""

    names = luigi.ListParameter()
    tag = luigi.Parameter(default="")
    started_file = luigi.Parameter(default="", significant=False)
    wait_file = luigi.Parameter(default="", significant=False)

    def run(self) -> None:
        if self.started_file:
            Path(self.started_file).touch()
        if self.wait_file:
            deadline = time.monotonic() + 300
            while not Path(self.wait_file).exists():
                assert time.monotonic() < deadline, f"{self.wait_file} never appeared"
                time.sleep(0.02)  # polls a file (no change notification); the deadline bounds it
        seen = {name: os.environ.get(name) for name in self.names}
        seen["KANNON_SECRETS_FILE"] = os.environ.get("KANNON_SECRETS_FILE")
        self.dump(seen)
