"""Whole pipelines on the Kubernetes backend against the emulator: ``Kannon(executor=K8sJobExecutor(...))``, the
legacy constructor, an S3 workspace on a local moto server, and the CLI (re-attach after the master is SIGKILLed).

Pods are local processes in the test's directory (``workingDir``), so the gokart workspace ./resources is shared
with the master exactly as a PersistentVolume would be in a cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kannon.backends.kubernetes import K8sJobExecutor
from kannon.cli import load_target
from kannon.result import KannonBuildError, Status
from kannon.scheduler import Kannon
from kannon.testing import KubeEmulator
from tests.support import tasks

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[3]
PY = sys.executable


def template(workdir: Path, **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{
            "name": "main", "image": "kannon-test:latest", "workingDir": str(workdir),
            "env": [{"name": "PYTHONPATH", "value": str(REPO)}], **container}]}}},
    }  # fmt: skip


def executor(kube: KubeEmulator, workdir: Path, **kw: Any) -> K8sJobExecutor:
    kw.setdefault("retry_backoff", 0.05)
    kw.setdefault("python", PY)
    return K8sJobExecutor(template(workdir), api_client=kube.api_client(), **kw)


def test_quickstart_dag_on_kubernetes(kube: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUICKSTART_BULLET_SECONDS", "0.1")
    root, extra = load_target(f"{REPO}/examples/quickstart/pipeline.py:root")
    result = Kannon(executor=executor(kube, tmp_path), sys_path=extra,
                    env_to_inherit=["QUICKSTART_BULLET_SECONDS"]).build(root)  # fmt: skip
    assert result.ok and result.backend == "kubernetes"
    bullets = [r for r in result.tasks.values() if r.placement.value == "bullet"]
    assert len(bullets) == 9
    for rec in bullets:
        assert rec.status is Status.SUCCEEDED
        assert rec.last is not None and (rec.last.where or "").startswith("pod kannon-task")
    assert root.output().load() == "G(F(E0(D0(C0(B(A(a))))), E1(D1(C1(B(A(a))))), E2(D2(C2(B(A(a)))))))"
    assert len(list(Path(result.run_dir or "").glob(f"logs/{result.invocation_id}/TaskC-*.log"))) == 3
    jobs = kube.jobs()
    assert len(jobs) == 9  # finished Jobs stay for ttlSecondsAfterFinished (logs remain readable with kubectl)
    for job in jobs.values():
        env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert "KANNON_SPEC" in env  # small specs travel inline in the pod's env
        assert job["spec"]["template"]["spec"]["containers"][0]["command"][:3] == [PY, "-m", "kannon"]


def test_finished_attempts_leave_nothing_in_the_executors_tracking(kube: KubeEmulator, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #16 (peak RSS at 10,000 bullets): a finished attempt keeps no Job or pod state in the master (only its
    Job's name, to ignore late events); what users see (result, log files) is unchanged."""
    monkeypatch.setenv("QUICKSTART_BULLET_SECONDS", "0.1")
    root, extra = load_target(f"{REPO}/examples/quickstart/pipeline.py:root")
    ex = executor(kube, tmp_path)
    result = Kannon(executor=ex, sys_path=extra, env_to_inherit=["QUICKSTART_BULLET_SECONDS"]).build(root)
    assert result.ok
    bullets = [r for r in result.tasks.values() if r.placement.value == "bullet"]
    assert len(bullets) == 9 and all(r.last is not None and r.last.where for r in bullets)
    assert ex._by_key == {} and ex._by_name == {} and ex._early == {}
    assert ex._pods == {} and ex._pods_deleted == {}  # late pod events of finished Jobs are not cached either
    assert len(ex._done) == 9


FAILING = """
import gokart, luigi, kannon

class K8sHog(kannon.TaskOnBullet[str]):
    kannon_hints = kannon.Hints(memory="48Mi")

    def run(self) -> None:
        self.dump("never")

class K8sRaises(kannon.TaskOnBullet[str]):
    def run(self) -> None:
        print("about to fail", flush=True)
        raise ValueError("broken on purpose")

class K8sFlaky(kannon.TaskOnBullet[str]):
    def run(self) -> None:
        print("made it", flush=True)
        self.dump("flaky")

class K8sFailJoin(gokart.TaskOnKart[str]):
    def requires(self):
        return [K8sHog(), K8sRaises(), K8sFlaky()]

    def run(self) -> None:
        self.dump("never")

root = K8sFailJoin()
"""


def pipeline(tmp_path: Path, source: str) -> tuple[Any, list[str]]:
    """Write a pipeline module under a unique name (modules are imported once per process) and load its root."""
    path = tmp_path / f"k8s_pipeline_{uuid.uuid4().hex[:8]}.py"
    path.write_text(source)
    return load_target(f"{path}:root")


def test_failures_are_classified_and_infra_failures_retried_for_free(kube: KubeEmulator, tmp_path: Path) -> None:
    root, extra = pipeline(tmp_path, FAILING)
    kube.faults.pod_behaviour("^kannon-k8shog-", "OOMKilled")
    kube.faults.pod_behaviour("^kannon-k8sflaky-", "Evicted", times=1)
    with pytest.raises(KannonBuildError) as err:
        # retries=0: the eviction is retried as an infrastructure failure, the task's own retries are not spent
        Kannon(executor=executor(kube, tmp_path), sys_path=extra, retries=0, retry_delay=0.01).build(root)
    recs = {r.family: r for r in err.value.result.tasks.values()}
    hog, raises, flaky = recs["K8sHog"], recs["K8sRaises"], recs["K8sFlaky"]
    assert hog.status is Status.FAILED and hog.last is not None
    assert (hog.last.exit_code, hog.last.failure_class) == (137, "OOMKilled")
    assert "48Mi" in (hog.reason or "") and "memory" in (hog.reason or "")
    assert raises.status is Status.FAILED and raises.last is not None
    assert raises.last.exit_code == 6 and "broken on purpose" in (raises.reason or "")
    assert any("ValueError: broken on purpose" in line for line in raises.last.log_tail)
    (log,) = Path(err.value.result.run_dir or "").glob(f"logs/{err.value.result.invocation_id}/K8sRaises-*.log")
    assert "about to fail" in log.read_text()  # the whole output is kept, not just the tail
    assert flaky.status is Status.SUCCEEDED and len(flaky.attempts) == 2
    assert flaky.attempts[0].failure_class == "Evicted" and flaky.attempts[0].infra
    assert "made it" in flaky.attempts[1].log_tail
    assert recs["K8sFailJoin"].status is Status.UPSTREAM_FAILED
    assert "out of memory" in str(err.value)


def test_legacy_constructor_still_works(kube: KubeEmulator, tmp_path: Path) -> None:
    body = template(tmp_path)
    api = client.BatchV1Api(kube.api_client())
    template_job = client.ApiClient()._ApiClient__deserialize(body, "V1Job")  # type: ignore[attr-defined]
    root = tasks.Join(parents=[tasks.Bullet(name="legacy")])
    with pytest.warns(DeprecationWarning, match="path_child_script"):
        k = Kannon(api_instance=api, template_job=template_job, job_prefix="legacy-child",
                   path_child_script="./run_child.py", max_child_jobs=2)  # fmt: skip
    assert isinstance(k.executor, K8sJobExecutor) and k.max_parallel == 2
    k.executor.python = PY
    result = k.build(root)
    assert result.ok and root.output().load() == ["legacy()"]
    (job,) = kube.jobs().values()
    assert job["metadata"]["name"].startswith("legacy-child-bullet-")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A local moto S3 server (127.0.0.1) with a bucket; AWS_* variables point boto3 (and gokart) at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    import boto3

    boto3.client("s3").create_bucket(Bucket="kannon-e2e")
    try:
        yield "s3://kannon-e2e/ws"
    finally:
        server.stop()


def test_s3_workspace_carries_specs_and_outputs(kube: KubeEmulator, tmp_path: Path, s3: str) -> None:
    import boto3

    a = tasks.Bullet(name="a", workspace_directory=s3)
    b = tasks.Bullet(name="b", parents=[a], workspace_directory=s3)
    root = tasks.Join(parents=[b], workspace_directory=s3)
    ex = executor(kube, tmp_path / "elsewhere", inline_spec_limit=0)  # every spec through the workspace
    (tmp_path / "elsewhere").mkdir()
    result = Kannon(executor=ex, env_to_inherit=["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                                 "AWS_DEFAULT_REGION"]).build(root)  # fmt: skip
    assert result.ok and root.output().load() == ["b(a())"]
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="kannon-e2e")["Contents"]]
    # deleted when the run ended (issue 12); the Jobs' commands below show they went through the S3 workspace
    assert not [k for k in keys if k.startswith(f"ws/kannon/specs/{result.run_id}/")]
    assert not list((tmp_path / "elsewhere").rglob("*.pkl"))  # outputs went to S3, not a local directory
    for job in kube.jobs().values():
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert not any(e["name"] == "KANNON_SPEC" for e in container["env"])
        location = container["command"][container["command"].index("--spec") + 1]
        assert location.startswith(f"s3://kannon-e2e/ws/kannon/specs/{result.run_id}/")


# -- the CLI ----------------------------------------------------------------------------------------------------------
WAITING = '''
import os, time
import gokart, luigi, kannon

class K8sWaiter(kannon.TaskOnBullet[str]):
    name = luigi.Parameter()

    def run(self) -> None:
        print(f"{self.name} waiting", flush=True)
        while not os.path.exists(os.environ["K8S_E2E_FLAG"]):
            time.sleep(0.05)
        self.dump(self.name)

class K8sWaitJoin(gokart.TaskOnKart[str]):
    def requires(self):
        return [K8sWaiter(name="a"), K8sWaiter(name="b")]

    def run(self) -> None:
        self.dump("+".join(self.load(p) for p in self.requires()))

root = K8sWaitJoin()
'''


def cli(kube: KubeEmulator, tmp_path: Path, events: Path, *extra: str) -> subprocess.Popen[str]:
    job_template = tmp_path / "job.yaml"
    body = template(tmp_path)
    body["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "K8S_E2E_FLAG", "value": str(tmp_path / "release")})
    job_template.write_text(yaml.safe_dump(body))
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    argv = [PY, "-m", "kannon", "build", f"{tmp_path / 'waitpipe.py'}:root", "--backend", "kubernetes",
            "--job-template", str(job_template), "--k8s-python", PY, "--events", str(events), *extra]  # fmt: skip
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip


def test_cli_rerun_after_sigkill_adopts_running_jobs(kube: KubeEmulator, tmp_path: Path) -> None:
    (tmp_path / "waitpipe.py").write_text(WAITING)
    first = cli(kube, tmp_path, tmp_path / "events1.jsonl")
    try:
        running = lambda: [p for p in kube.pods().values() if p["status"].get("phase") == "Running"]  # noqa: E731
        kube.wait_for(lambda: len(running()) == 2, timeout=120, message="two bullets never ran")
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the master dies without any cleanup
        first.communicate()
    before = {name: job["metadata"]["uid"] for name, job in kube.jobs().items()}
    assert len(before) == 2
    # the run's Secret (it holds the spec key, so every run has one) is put again on re-attach (409, replace)
    creates = len([r for r in kube.requests if r[0] == "POST" and "/secrets" not in r[1]])

    events = tmp_path / "events2.jsonl"
    second = cli(kube, tmp_path, events)
    try:
        def adopted() -> bool:
            lines = events.read_text().splitlines() if events.exists() else []
            return sum(1 for ln in lines if '"started"' in ln and "(adopted)" in ln) == 2

        kube.wait_for(lambda: adopted() or second.poll() is not None, timeout=120)
        assert second.poll() is None, second.communicate()[0]
        (tmp_path / "release").touch()
        output, _ = second.communicate(timeout=120)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, output
    assert len([r for r in kube.requests if r[0] == "POST" and "/secrets" not in r[1]]) == creates  # no Job again
    assert {name: job["metadata"]["uid"] for name, job in kube.jobs().items()} == before
    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e["kind"] for e in records if e["kind"] == "run_finished"] == ["run_finished"]


def test_a_duplicate_master_then_sigterm_harms_nothing(kube: KubeEmulator, tmp_path: Path) -> None:
    """Reproduced before the run lease: a second master of the same pipeline, stopped with SIGTERM by the user who
    noticed the duplicate, deleted the first master's running Jobs. Now the duplicate exits 2 naming the holder,
    and one that waits for the lease (--wait-for-lease) is SIGTERMed while waiting: the first master's Jobs are
    untouched and it finishes."""
    (tmp_path / "waitpipe.py").write_text(WAITING)
    first = cli(kube, tmp_path, tmp_path / "events1.jsonl")
    try:
        running = lambda: [p for p in kube.pods().values() if p["status"].get("phase") == "Running"]  # noqa: E731
        kube.wait_for(lambda: len(running()) == 2, timeout=120, message="two bullets never ran")
        jobs = {name: job["metadata"]["uid"] for name, job in kube.jobs().items()}

        duplicate = cli(kube, tmp_path, tmp_path / "events2.jsonl")
        out, _ = duplicate.communicate(timeout=120)
        assert duplicate.returncode == 2, out
        assert "another kannon master" in out and f"pid {first.pid}" in out, out
        assert "Traceback" not in out

        lease_reads = lambda: sum(1 for m, p, _ in kube.requests if m == "GET" and "/leases/" in p)  # noqa: E731
        before = lease_reads()
        waiting = cli(kube, tmp_path, tmp_path / "events3.jsonl", "--wait-for-lease", "600")
        kube.wait_for(lambda: lease_reads() >= before + 2 or waiting.poll() is not None, timeout=120,
                      message="the waiting master never asked for the lease")  # fmt: skip
        assert waiting.poll() is None, waiting.communicate()[0]
        os.killpg(waiting.pid, signal.SIGTERM)
        out, _ = waiting.communicate(timeout=120)
        assert waiting.returncode != 0, out

        deletes = [p for m, p, _ in kube.requests if m == "DELETE" and "/jobs/" in p]
        assert deletes == [], deletes
        assert {name: job["metadata"]["uid"] for name, job in kube.jobs().items()} == jobs
        assert first.poll() is None
        (tmp_path / "release").touch()
        out, _ = first.communicate(timeout=180)
        assert first.returncode == 0, out
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.communicate()
