"""Contract tier: the Kubernetes backend's scenarios against a real cluster, only through the official client.

Runs when ``KANNON_TEST_KUBECONFIG`` names a kubeconfig; skipped otherwise (the reason shows with ``pytest -ra``).
Nothing here knows about the emulator: every check goes through the API (Jobs and pods listed by the run's label).
The suite runs this same module twice more, in a pytest of its own: against the real upstream control plane with
kannon's node (tests/e2e/upstream/test_contract_upstream.py) and against the emulator
(``test_contract_selfcheck.py``), both with the Docker runtime. Configuration (docs/kubernetes.md, "Contract tier"):

- ``KANNON_TEST_K8S_SHARED`` (required): a directory of this machine that pods see at the same path (kind
  ``extraMounts``, ``minikube mount``, an NFS export...); mounted into every pod as a ``hostPath`` volume. Each test
  works in its own subdirectory: pipelines, gokart workspace, the files that release waiting bullets.
- ``KANNON_TEST_K8S_IMAGE`` (default ``kannon-test:latest``): an image with Python, gokart and kannon installed.
- ``KANNON_TEST_K8S_PYTHON`` (default ``python``): the interpreter in that image.
- ``KANNON_TEST_K8S_NAMESPACE`` (default: the kubeconfig context's namespace, else ``default``).
- ``KANNON_TEST_K8S_NODE_SELECTOR`` (default none): ``key=value[,key=value...]``, the pods' ``nodeSelector`` (e.g. the
  nodes that can see the shared directory).
- ``KANNON_TEST_K8S_PENDING`` (default 120): seconds before a pod that stays Pending fails (``pending_timeout``);
  the unschedulable scenario waits that long. ``KANNON_TEST_K8S_TIMEOUT`` (default 600): the longest wait for a state.
- ``KANNON_TEST_K8S_MOUNT_HOST_PYTHON=1``: also mount this machine's interpreter, virtualenv and checkout (hostPath,
  same paths) and run pods with this interpreter: the image then needs nothing but a libc.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

KUBECONFIG = os.environ.get("KANNON_TEST_KUBECONFIG")
if not KUBECONFIG:
    pytest.skip(
        "contract tier: KANNON_TEST_KUBECONFIG is not set (the kubeconfig of a real cluster to run these scenarios "
        "against; docs/kubernetes.md, 'Contract tier'). They run against the upstream control plane in "
        "tests/e2e/upstream/test_contract_upstream.py",
        allow_module_level=True,
    )

from kubernetes import client, config  # noqa: E402

from kannon.backends.kubernetes import K8sJobExecutor  # noqa: E402
from kannon.cli import load_target  # noqa: E402
from kannon.result import KannonBuildError, Status  # noqa: E402
from kannon.scheduler import Kannon  # noqa: E402
from tests.support.procs import wait_until  # noqa: E402

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[3]
IMAGE = os.environ.get("KANNON_TEST_K8S_IMAGE", "kannon-test:latest")
HOST_PYTHON = os.environ.get("KANNON_TEST_K8S_MOUNT_HOST_PYTHON") == "1"
PYTHON = sys.executable if HOST_PYTHON else os.environ.get("KANNON_TEST_K8S_PYTHON", "python")
TIMEOUT = float(os.environ.get("KANNON_TEST_K8S_TIMEOUT", "600"))
PENDING = float(os.environ.get("KANNON_TEST_K8S_PENDING", "120"))  # long enough for a cold image pull
NODE_SELECTOR = dict(kv.split("=", 1) for kv in os.environ.get("KANNON_TEST_K8S_NODE_SELECTOR", "").split(",") if kv)
RUN_LABEL = "kannon.io/run-id"
T = TypeVar("T")


def _shared() -> Path:
    shared = os.environ.get("KANNON_TEST_K8S_SHARED")
    if not shared or not Path(shared).is_dir():
        pytest.fail(f"KANNON_TEST_KUBECONFIG is set, but KANNON_TEST_K8S_SHARED ({shared!r}) is not a directory: "
                    "set it to a directory pods see at the same path (see this module's docstring)",
                    pytrace=False)  # fmt: skip
    return Path(shared).resolve()


def _namespace() -> str:
    if os.environ.get("KANNON_TEST_K8S_NAMESPACE"):
        return os.environ["KANNON_TEST_K8S_NAMESPACE"]
    _, active = config.list_kube_config_contexts(config_file=KUBECONFIG)
    return str((active or {}).get("context", {}).get("namespace") or "default")


NAMESPACE = _namespace()


def api_client() -> Any:
    return config.new_client_from_config(config_file=KUBECONFIG)


@pytest.fixture
def workdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh directory under the shared one, the master's working directory (its gokart workspace: ./resources)."""
    path = _shared() / f"contract-{uuid.uuid4().hex[:10]}"
    path.mkdir()
    monkeypatch.chdir(path)
    yield path


def template(workdir: Path, **env: str) -> dict[str, Any]:
    mounts = [str(workdir.parent)]
    if HOST_PYTHON:
        mounts += [sys.prefix, sys.base_prefix, str(REPO)]
        env = {"PYTHONPATH": str(REPO), **env}
    paths = sorted(dict.fromkeys(mounts))
    volumes = [{"name": f"shared{i}", "hostPath": {"path": p}} for i, p in enumerate(paths)]
    volume_mounts = [{"name": f"shared{i}", "mountPath": p} for i, p in enumerate(paths)]
    container = {"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "workingDir": str(workdir),
                 "env": [{"name": k, "value": v} for k, v in env.items()], "volumeMounts": volume_mounts}  # fmt: skip
    pod_spec: dict[str, Any] = {"containers": [container], "volumes": volumes}
    if NODE_SELECTOR:
        pod_spec["nodeSelector"] = NODE_SELECTOR
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": NAMESPACE},
            "spec": {"template": {"spec": pod_spec}}}  # fmt: skip


def executor(workdir: Path, **kw: Any) -> K8sJobExecutor:
    return K8sJobExecutor(template(workdir), api_client=api_client(), python=PYTHON, **kw)


def pipeline(workdir: Path, source: str) -> tuple[Any, list[str]]:
    path = workdir / f"contract_pipeline_{uuid.uuid4().hex[:8]}.py"  # a new module name: imported once per process
    path.write_text(source)
    return load_target(f"{path}:root")


def jobs_of(run_id: str) -> list[Any]:
    batch = client.BatchV1Api(api_client())
    return list(batch.list_namespaced_job(NAMESPACE, label_selector=f"{RUN_LABEL}={run_id}").items)


def pods_of(run_id: str) -> list[Any]:
    core = client.CoreV1Api(api_client())
    return list(core.list_namespaced_pod(NAMESPACE, label_selector=f"{RUN_LABEL}={run_id}").items)


def wait_for(predicate: Callable[[], T], what: str) -> T:
    # every check is a request to the cluster: back off further than the local tests do
    return wait_until(predicate, TIMEOUT, what, max_delay=2.0)


def complete(job: Any) -> bool:
    return any(c.type == "Complete" and c.status == "True" for c in (job.status.conditions or []))


# --- the quick-start DAG -------------------------------------------------------------------------------------------
def test_quickstart_dag(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = (REPO / "examples" / "quickstart" / "pipeline.py").read_text()
    monkeypatch.setenv("QUICKSTART_BULLET_SECONDS", "0.1")
    monkeypatch.setenv("QUICKSTART_MASTER_SECONDS", "0.01")
    root, extra = pipeline(workdir, source)
    result = Kannon(executor=executor(workdir), sys_path=extra,
                    env_to_inherit=["QUICKSTART_BULLET_SECONDS"]).build(root)  # fmt: skip
    assert result.ok and result.backend == "kubernetes"
    assert root.output().load() == "G(F(E0(D0(C0(B(A(a))))), E1(D1(C1(B(A(a))))), E2(D2(C2(B(A(a)))))))"
    jobs = jobs_of(result.run_id)
    assert len(jobs) == 9 and all(complete(j) for j in jobs)  # one Job per bullet, kept for the TTL
    for job in jobs:
        command = job.spec.template.spec.containers[0].command
        assert command[:3] == [PYTHON, "-m", "kannon"] and job.spec.backoff_limit == 0


# --- failure classes ------------------------------------------------------------------------------------------------
FAILING = '''
import time
import gokart, luigi, kannon

class ContractRaises(kannon.TaskOnBullet[str]):
    def run(self):
        print("about to fail", flush=True)
        raise ValueError("broken on purpose")

class ContractSlow(kannon.TaskOnBullet[str]):
    kannon_hints = kannon.Hints(timeout=3)

    def run(self):
        time.sleep(600)

class ContractHog(kannon.TaskOnBullet[str]):
    kannon_hints = kannon.Hints(memory="64Mi")

    def run(self):
        hoard = [bytearray(16 * 2**20) for _ in range(64)]  # 1 GiB, 16 MiB at a time
        self.dump(str(len(hoard)))

class ContractNoImage(kannon.TaskOnBullet[str]):
    kannon_hints = kannon.Hints(image="kannon-contract-no-such-image:never")

    def run(self):
        self.dump("never")

class ContractNowhere(kannon.TaskOnBullet[str]):
    kannon_hints = kannon.Hints(node_selector={"kannon.io/contract": "no-such-node"})

    def run(self):
        self.dump("never")

class ContractFine(kannon.TaskOnBullet[str]):
    def run(self):
        self.dump("fine")

class ContractFailJoin(gokart.TaskOnKart[str]):
    def requires(self):
        return [ContractRaises(), ContractSlow(), ContractHog(), ContractNoImage(), ContractNowhere(), ContractFine()]

    def run(self):
        self.dump("never")

root = ContractFailJoin()
'''


def test_failure_classes(workdir: Path) -> None:
    root, extra = pipeline(workdir, FAILING)
    with pytest.raises(KannonBuildError) as err:
        Kannon(executor=executor(workdir, pending_timeout=PENDING), sys_path=extra, retries=0).build(root)
    recs = {r.family: r for r in err.value.result.tasks.values()}

    def failure(family: str) -> tuple[str | None, str]:
        rec = recs[family]
        assert rec.status is Status.FAILED, f"{family}: {rec.status} {rec.reason}"
        assert rec.last is not None
        return rec.last.failure_class, rec.reason or ""

    klass, reason = failure("ContractRaises")
    assert recs["ContractRaises"].last is not None and recs["ContractRaises"].last.exit_code == 6
    assert "broken on purpose" in reason
    assert any("ValueError: broken on purpose" in line for line in recs["ContractRaises"].last.log_tail)
    assert failure("ContractSlow")[0] == "DeadlineExceeded"
    klass, reason = failure("ContractHog")
    assert klass == "OOMKilled" and "64Mi" in reason
    klass, reason = failure("ContractNoImage")
    assert klass == "ImagePull" and "kannon-contract-no-such-image:never" in reason
    assert failure("ContractNowhere")[0] == "Unschedulable"
    assert recs["ContractFine"].status is Status.SUCCEEDED
    assert recs["ContractFailJoin"].status is Status.UPSTREAM_FAILED
    # nothing of a failed run keeps running
    run_id = err.value.result.run_id
    wait_for(lambda: all(p.status.phase in ("Succeeded", "Failed") for p in pods_of(run_id)) or not pods_of(run_id),
             "the failed run's pods to end")  # fmt: skip


# --- the master killed, signalled -------------------------------------------------------------------------------
WAITING = '''
import os, time
import gokart, luigi, kannon

class ContractWaiter(kannon.TaskOnBullet[str]):
    name = luigi.Parameter()

    def run(self):
        print(f"{self.name} waiting", flush=True)
        while not os.path.exists("release"):
            time.sleep(0.05)
        self.dump(self.name)

class ContractWaitJoin(gokart.TaskOnKart[str]):
    def requires(self):
        return [ContractWaiter(name="a"), ContractWaiter(name="b")]

    def run(self):
        self.dump("+".join(self.load(p) for p in self.requires()))

root = ContractWaitJoin()
'''


def master(workdir: Path, events: Path) -> subprocess.Popen[str]:
    job_template = workdir / "job.yaml"
    job_template.write_text(yaml.safe_dump(template(workdir)))
    argv = [sys.executable, "-m", "kannon", "build", "waitpipe.py:root", "--backend", "kubernetes",
            "--job-template", str(job_template), "--k8s-python", PYTHON, "--namespace", NAMESPACE,
            "--events", str(events)]  # fmt: skip
    env = {**os.environ, "KUBECONFIG": str(KUBECONFIG), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(argv, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip


def run_id_of(events: Path) -> str | None:
    if not events.exists():
        return None
    for line in events.read_text().splitlines():
        if '"run_started"' in line:
            return str(json.loads(line)["run_id"])
    return None


def both_running(events: Path) -> str | None:
    run_id = run_id_of(events)
    if run_id is None:
        return None
    running = [p for p in pods_of(run_id) if p.status.phase == "Running"]
    return run_id if len(running) == 2 else None


def test_sigterm_deletes_every_job_of_the_run(workdir: Path) -> None:
    (workdir / "waitpipe.py").write_text(WAITING)
    events = workdir / "events.jsonl"
    proc = master(workdir, events)
    try:
        run_id = wait_for(lambda: both_running(events) or proc.poll() is not None, "two running bullets")
        assert proc.poll() is None, proc.communicate()[0]
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, output
    assert isinstance(run_id, str) and jobs_of(run_id) == []  # deleted, and confirmed gone, before the exit
    wait_for(lambda: not pods_of(run_id), "the run's pods to be deleted (propagationPolicy=Background)")


def test_master_sigkilled_then_rerun_creates_each_job_once(workdir: Path) -> None:
    (workdir / "waitpipe.py").write_text(WAITING)
    first = master(workdir, workdir / "events1.jsonl")
    try:
        run_id = wait_for(lambda: both_running(workdir / "events1.jsonl") or first.poll() is not None,
                          "two running bullets")  # fmt: skip
        assert first.poll() is None, first.communicate()[0]
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the master dies without any cleanup
        first.communicate()
    assert isinstance(run_id, str)
    before = sorted((j.metadata.name, j.metadata.uid) for j in jobs_of(run_id))
    assert len(before) == 2
    events = workdir / "events2.jsonl"
    second = master(workdir, events)
    try:
        def adopted() -> bool:
            lines = events.read_text().splitlines() if events.exists() else []
            return sum(1 for ln in lines if '"started"' in ln and "(adopted)" in ln) == 2

        wait_for(lambda: adopted() or second.poll() is not None, "the second master to adopt both Jobs")
        assert second.poll() is None, second.communicate()[0]
        (workdir / "release").touch()
        output, _ = second.communicate(timeout=TIMEOUT)
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
    assert second.returncode == 0, output
    assert sorted((j.metadata.name, j.metadata.uid) for j in jobs_of(run_id)) == before  # none created again
    assert (workdir / "resources").exists()


# --- the 0.1.x constructor ----------------------------------------------------------------------------------------
LEGACY = '''
import gokart, kannon

class ContractLegacyBullet(kannon.TaskOnBullet[str]):
    def run(self):
        self.dump("legacy")

class ContractLegacyRoot(gokart.TaskOnKart[str]):
    def requires(self):
        return ContractLegacyBullet()

    def run(self):
        self.dump(self.load(self.requires()))

root = ContractLegacyRoot()
'''


def test_legacy_constructor(workdir: Path) -> None:
    root, extra = pipeline(workdir, LEGACY)
    api = api_client()
    template_job = api._ApiClient__deserialize(template(workdir), "V1Job")
    with pytest.warns(DeprecationWarning, match="path_child_script"):
        k = Kannon(api_instance=client.BatchV1Api(api), template_job=template_job, job_prefix="contract-legacy",
                   path_child_script="./run_child.py", max_child_jobs=2)  # fmt: skip
    assert isinstance(k.executor, K8sJobExecutor)
    k.executor.python = PYTHON
    k.sys_path = tuple(extra)
    result = k.build(root)
    assert result.ok and root.output().load() == "legacy"
    (job,) = jobs_of(result.run_id)
    assert job.metadata.name.startswith("contract-legacy-")
