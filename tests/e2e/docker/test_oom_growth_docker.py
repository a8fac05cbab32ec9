"""Opt-in growth on OOM on Docker (issue 17): a bullet needing ~300 MB under a 200Mi container limit is OOM-killed
by the kernel (a real cgroup limit), retried at once with 400Mi although --retries is 0, and succeeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.e2e.docker.support import python_volumes

PIPELINE = """
    import luigi

    import kannon


    class Hungry(kannon.TaskOnBullet[int]):
        kannon_hints = kannon.Hints(memory="200Mi")
        mb = luigi.IntParameter()

        def run(self):
            block = b"\\x01" * (self.mb << 20)  # written: resident, charged to the container's cgroup
            self.dump(len(block) >> 20)


    def root():
        return Hungry(mb=300)
"""


def test_an_oom_killed_attempt_is_retried_with_grown_memory_and_succeeds(engine: Any, image: str,
                                                                         tmp_path: Path) -> None:  # fmt: skip
    (tmp_path / "hungry.py").write_text(textwrap.dedent(PIPELINE))
    argv = [sys.executable, "-m", "kannon", "build", "hungry.py:root", "--backend", "docker", "--image", image,
            "--workspace", str(tmp_path / "ws"), "--events", "ev.jsonl", "--retries", "0", "--oom-growth", "2",
            "--oom-growth-cap", "1Gi", "--volume", f"{tmp_path}:{tmp_path}"]  # fmt: skip
    for volume in python_volumes():
        argv += ["--volume", volume]
    done = subprocess.run(argv, cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    evs = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    mine = [e for e in evs if e.get("family") == "Hungry" and e["kind"] in ("retried", "succeeded", "failed")]
    assert [e["kind"] for e in mine] == ["retried", "succeeded"], mine
    assert mine[0]["failure_class"] == "OOMKilled"
    assert "retrying with memory 400Mi = 200Mi x 2 (OOM growth step 1 of 3" in mine[0]["reason"]
    assert mine[0]["requested_resources"]["memory"] == "200Mi"
    assert mine[1]["requested_resources"]["memory"] == "400Mi" and mine[1]["attempt"] == 2
    # the run's progress output says so, on the retry's line
    assert any(line.startswith("kannon: retrying Hungry(mb=300)") and "retrying with memory 400Mi" in line
               for line in (done.stdout + done.stderr).splitlines()), done.stdout + done.stderr  # fmt: skip
