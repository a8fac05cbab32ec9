"""kannon's master as a real process (``kannon build --backend kubernetes``, the admin kubeconfig) on the real control
plane, bullets run by kannon's node — the scenarios tests/e2e/k8s/test_k8s_backend_build.py and
tests/e2e/k8s/test_secrets_k8s.py run against the emulator:

* a credential passed with ``--env-to-inherit`` reaches the bullet through the run's Secret (``secretKeyRef``), and
  no Job or Pod the real API server returns holds it in clear text (issue 12);
* the master SIGKILLed while its bullets' Jobs run: a second master adopts the running Jobs (no new Job) and each
  bullet's run() executes exactly once;
* a duplicate master started while the first runs exits 2 naming the holder of the run's Lease, and harms nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.k8s.test_secrets_k8s import CRED, unpacked
from tests.e2e.upstream.test_kannon import REPO, template
from tests.support.procs import wait_until

pytestmark = pytest.mark.upstream

PY = sys.executable
WAIT = 180.0

# Two bullets that wait for a file; each appends its pid to counters/<name>.attempts once it ran (tests/support).
PIPELINE = """
import os
from tests.support.tasks import Bullet, Join

here = os.path.dirname(os.path.abspath(__file__))
root = Join(parents=[Bullet(name=n, started_file=f"{here}/{n}.started", wait_file=f"{here}/release",
                            counter_dir=f"{here}/counters") for n in ("a", "b")])
"""


class Master:
    """``kannon build`` of the pipeline in ``tmp_path`` against the real control plane, in its own session."""

    def __init__(self, upstream: Any, namespace: str, node: str, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        (tmp_path / "counters").mkdir(exist_ok=True)
        (tmp_path / "pipe.py").write_text(PIPELINE)
        (tmp_path / "job.yaml").write_text(yaml.safe_dump(template(namespace, node, tmp_path)))
        self.env = {**os.environ, "KUBECONFIG": str(upstream.kubeconfig), "PYTHONPATH": str(REPO)}
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, events: str, *extra: str, pipeline: str = "pipe.py", **env: str) -> subprocess.Popen[str]:
        argv = [PY, "-m", "kannon", "build", f"{self.tmp_path / pipeline}:root", "--backend", "kubernetes",
                "--job-template", str(self.tmp_path / "job.yaml"), "--k8s-python", PY,
                "--events", str(self.tmp_path / events), *extra]  # fmt: skip
        proc = subprocess.Popen(argv, cwd=self.tmp_path, env={**self.env, **env}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
        self.procs.append(proc)
        return proc

    def events(self, name: str) -> list[dict[str, Any]]:
        path = self.tmp_path / name
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()


@pytest.fixture
def master(upstream: Any, namespace: str, kannon_node: str, tmp_path: Path) -> Iterator[Master]:
    m = Master(upstream, namespace, kannon_node, tmp_path)
    yield m
    m.kill_all()


def started(tmp_path: Path, proc: subprocess.Popen[str]) -> None:
    """Both bullets are running in their pods (each touched its started file), or the master exited."""
    wait_until(lambda: all((tmp_path / f"{n}.started").exists() for n in "ab") or proc.poll() is not None, WAIT,
               "both bullets to start", max_delay=0.5)  # fmt: skip
    assert proc.poll() is None, proc.communicate()[0]


def jobs_by_name(batch: Any, namespace: str) -> dict[str, str]:
    return {j.metadata.name: j.metadata.uid for j in batch.list_namespaced_job(namespace).items}


def runs(tmp_path: Path) -> dict[str, int]:
    return {p.name.removesuffix(".attempts"): len(p.read_text().splitlines())
            for p in (tmp_path / "counters").iterdir()}  # fmt: skip


def test_a_master_sigkilled_mid_run_is_replaced_by_one_that_adopts_its_jobs(
    master: Master, batch: Any, namespace: str, tmp_path: Path
) -> None:
    first = master.start("events1.jsonl")
    started(tmp_path, first)
    os.killpg(first.pid, signal.SIGKILL)  # the master dies without any cleanup; its pods keep running
    first.communicate()
    before = jobs_by_name(batch, namespace)
    assert len(before) == 2

    second = master.start("events2.jsonl")
    adopted = lambda: [e for e in master.events("events2.jsonl") if e["kind"] == "started"  # noqa: E731
                       and "(adopted)" in json.dumps(e)]  # fmt: skip
    wait_until(lambda: len(adopted()) == 2 or second.poll() is not None, WAIT, "the Jobs to be adopted", max_delay=0.5)
    assert second.poll() is None, second.communicate()[0]
    (tmp_path / "release").touch()
    output, _ = second.communicate(timeout=WAIT)
    assert second.returncode == 0, output
    assert jobs_by_name(batch, namespace) == before  # the same Jobs: none created again
    assert runs(tmp_path) == {"a": 1, "b": 1}  # each bullet's run() executed exactly once


def test_a_duplicate_master_exits_2_naming_the_holder_and_harms_nothing(
    master: Master, batch: Any, namespace: str, tmp_path: Path
) -> None:
    first = master.start("events1.jsonl")
    started(tmp_path, first)
    jobs = jobs_by_name(batch, namespace)

    duplicate = master.start("events2.jsonl")
    out, _ = duplicate.communicate(timeout=WAIT)
    assert duplicate.returncode == 2, out
    assert "another kannon master" in out and f"pid {first.pid}" in out, out
    assert "Traceback" not in out
    assert jobs_by_name(batch, namespace) == jobs and first.poll() is None

    (tmp_path / "release").touch()
    out, _ = first.communicate(timeout=WAIT)
    assert first.returncode == 0, out
    assert runs(tmp_path) == {"a": 1, "b": 1}


SECRET_PIPELINE = """
import hashlib, os, time
import gokart, luigi, kannon

here = os.path.dirname(os.path.abspath(__file__))

class RealCredBullet(kannon.TaskOnBullet[str]):
    digest = luigi.Parameter()  # the bullet gets only the credential's sha256 as a parameter

    def run(self) -> None:
        value = os.environ.get("KANNON_LEAK_CRED", "")
        assert hashlib.sha256(value.encode()).hexdigest() == self.digest, "credential not received intact"
        for n in "ab":
            open(f"{here}/{n}.started", "w").close()
        while not os.path.exists(f"{here}/release"):
            time.sleep(0.05)
        self.dump("ok")

class RealCredRoot(gokart.TaskOnKart[str]):
    def requires(self):
        return RealCredBullet(digest=hashlib.sha256(os.environ["KANNON_LEAK_CRED"].encode()).hexdigest())

    def run(self) -> None:
        self.dump(self.load())

root = RealCredRoot()
"""


def test_an_inherited_credential_reaches_the_bullet_only_through_the_run_secret(
    master: Master, api_client: Any, core: Any, batch: Any, namespace: str, tmp_path: Path
) -> None:
    (tmp_path / "credpipe.py").write_text(SECRET_PIPELINE)
    proc = master.start("events.jsonl", "--env-to-inherit", "KANNON_LEAK_CRED", pipeline="credpipe.py",
                        KANNON_LEAK_CRED=CRED)  # fmt: skip
    started(tmp_path, proc)
    (job,) = batch.list_namespaced_job(namespace).items
    (pod,) = core.list_namespaced_pod(namespace).items
    (secret,) = core.list_namespaced_secret(namespace, label_selector="kannon.io/run-id").items
    read_back = {"job": api_client.sanitize_for_serialization(job), "pod": api_client.sanitize_for_serialization(pod)}
    for kind, obj in read_back.items():
        assert not any(CRED in s for s in unpacked(obj)), f"the credential is in the {kind} in clear text"
    # The search finds it where it is (base64 in the Secret's data): it proves something.
    assert any(CRED in s for s in unpacked(api_client.sanitize_for_serialization(secret)))
    ref = {"name": "KANNON_LEAK_CRED", "valueFrom": {"secretKeyRef": {"name": secret.metadata.name,
                                                                      "key": "KANNON_LEAK_CRED"}}}  # fmt: skip
    for obj in (read_back["job"]["spec"]["template"], read_back["pod"]):
        assert ref in obj["spec"]["containers"][0]["env"]
    (tmp_path / "release").touch()
    out, _ = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, out  # the bullet checked the value it received against its digest
    assert CRED not in out and CRED not in (tmp_path / "events.jsonl").read_text()
    assert core.list_namespaced_secret(namespace, label_selector="kannon.io/run-id").items == []
