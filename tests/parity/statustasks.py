"""A bullet that reports its status the luigi way (``set_status_message`` / ``set_progress_percentage``), for the
status tests (tests/e2e/test_status_*.py) and the parity check against plain ``gokart.build``."""

from __future__ import annotations

import time
from pathlib import Path

import luigi

import kannon

MESSAGE = "loading rows 4/10"
PERCENTAGE = 40


class StatusBullet(kannon.TaskOnBullet[str]):
    name = luigi.Parameter()
    # Holds the task running until this file exists, so a test can look at the live view meanwhile.
    wait_file = luigi.Parameter(default="", significant=False)

    def run(self) -> None:
        print("before the status", flush=True)
        self.set_status_message(MESSAGE)
        self.set_progress_percentage(PERCENTAGE)
        print("after the status", flush=True)
        if self.wait_file:
            deadline = time.monotonic() + 120
            while not Path(self.wait_file).exists():
                assert time.monotonic() < deadline, f"{self.wait_file} never appeared"
                time.sleep(0.02)  # polls a file (no change notification); the deadline bounds it
        self.dump(f"status-{self.name}")
