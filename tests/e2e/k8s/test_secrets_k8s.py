"""Where a credential passed with ``--env-to-inherit`` goes on Kubernetes: into one Secret per run, nowhere else.

A real ``kannon build`` (the CLI, official client over HTTP) on the emulator. Its bullet checks that the credential
arrived intact (it gets only its sha256 as a parameter) and prints it once. Every object of every namespaced
resource the API server's discovery lists (Jobs, Pods with status and termination messages, Events, Leases,
ConfigMaps where served...), with base64 / zlib / JSON values unpacked, is searched for the credential: only the
run's Secret may hold it. Why (issue 12, real-clusters.md): anyone who may ``get jobs`` or ``get pods`` reads plain
env values; Secret read access is usually much narrower.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import hashlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kannon.backends.base import RunInfo
from kannon.testing import KubeEmulator

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[3]
PY = sys.executable
CRED = "kannon-leak-test-" + hashlib.sha256(b"issue 12").hexdigest()[:24]  # long: no accidental match
RUN_LABEL = "kannon.io/run-id"

PIPELINE = """
import hashlib, os, time
import gokart, luigi, kannon

class CredBullet(kannon.TaskOnBullet[str]):
    digest = luigi.Parameter()

    def run(self) -> None:
        value = os.environ.get("KANNON_LEAK_CRED", "")
        assert hashlib.sha256(value.encode()).hexdigest() == self.digest, "credential not received intact"
        print(f"credential: {value}", flush=True)
        while not os.path.exists(os.environ["K8S_E2E_FLAG"]):
            time.sleep(0.05)
        self.dump("ok")

class CredRoot(gokart.TaskOnKart[str]):
    def requires(self):
        return CredBullet(digest=hashlib.sha256(os.environ["KANNON_LEAK_CRED"].encode()).hexdigest())

    def run(self) -> None:
        self.dump(self.load())

root = CredRoot()
"""


def build(kube: KubeEmulator, tmp_path: Path, events: Path, cred: str = CRED) -> subprocess.Popen[str]:
    (tmp_path / "credpipe.py").write_text(PIPELINE)
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": "default"},
           "spec": {"template": {"spec": {"containers": [{
               "name": "main", "image": "kannon-test:latest", "workingDir": str(tmp_path),
               "env": [{"name": "PYTHONPATH", "value": str(REPO)},
                       {"name": "K8S_E2E_FLAG", "value": str(tmp_path / "release")}]}]}}}}  # fmt: skip
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    argv = [PY, "-m", "kannon", "build", f"{tmp_path / 'credpipe.py'}:root", "--backend", "kubernetes",
            "--job-template", str(tmp_path / "job.yaml"), "--k8s-python", PY, "--events", str(events),
            "--env-to-inherit", "KANNON_LEAK_CRED"]  # fmt: skip
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(REPO), "KANNON_LEAK_CRED": cred}
    return subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip


def unpacked(value: Any) -> list[str]:
    """Every string in ``value``, and every string inside those that decode as base64, zlib or JSON."""
    out: list[str] = []
    todo: list[Any] = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, (str, bytes)):
            text = item.decode("utf-8", "replace") if isinstance(item, bytes) else item
            out.append(text)
            raw = item if isinstance(item, bytes) else None
            if raw is None and len(text) >= 8:
                try:
                    raw = base64.b64decode(text, validate=True)
                except (binascii.Error, ValueError):
                    raw = None
            if raw is not None:
                for wbits in (15, 31):  # zlib, gzip
                    with contextlib.suppress(zlib.error):
                        todo.append(zlib.decompress(raw, wbits))
                if isinstance(item, str):
                    todo.append(raw)
            with contextlib.suppress(ValueError):
                todo.append(json.loads(text))
    return out


def holders(kube: KubeEmulator, needle: str) -> list[str]:
    """``resource/namespace/name`` of every namespaced object (all discoverable resources) that contains needle."""

    def get(path: str) -> Any:  # raw JSON over HTTP: what any reader of the API sees
        req = urllib.request.Request(kube.url + path, headers={"Authorization": f"Bearer {kube.token}"})
        with urllib.request.urlopen(req, timeout=30, context=kube.ssl_context()) as resp:
            return json.loads(resp.read())

    groups = ["/api/v1"] + [f"/apis/{g['preferredVersion']['groupVersion']}" for g in get("/apis")["groups"]]
    found = []
    for base in groups:
        for res in get(base)["resources"]:
            if "/" in res["name"] or not res["namespaced"] or "list" not in res["verbs"]:
                continue
            for obj in get(f"{base}/{res['name']}")["items"]:
                if any(needle in s for s in unpacked(obj)):
                    meta = obj["metadata"]
                    found.append(f"{res['name']}/{meta.get('namespace')}/{meta['name']}")
    return sorted(found)


def running_pods(kube: KubeEmulator) -> list[dict[str, Any]]:
    return [p for p in kube.pods().values() if p["status"].get("phase") == "Running"]


def run_secrets(kube: KubeEmulator) -> dict[str, dict[str, Any]]:
    return kube.store.snapshot("secrets", "default")


def test_the_credential_reaches_the_bullet_and_only_the_run_secret_holds_it(kube: KubeEmulator, tmp_path: Path) -> None:
    master = build(kube, tmp_path, tmp_path / "events.jsonl")
    try:
        kube.wait_for(lambda: running_pods(kube) or master.poll() is not None, timeout=120)
        assert master.poll() is None, master.communicate()[0]
        secrets = run_secrets(kube)
        assert len(secrets) == 1, secrets
        ((name, secret),) = secrets.items()
        assert RUN_LABEL in secret["metadata"]["labels"]
        # the search itself works: it finds the credential base64-encoded in the Secret, and only there
        assert holders(kube, CRED) == [f"secrets/default/{name}"]
        (tmp_path / "release").touch()
        output, _ = master.communicate(timeout=120)
    finally:
        if master.poll() is None:
            os.killpg(master.pid, signal.SIGKILL)
            master.communicate()
    assert master.returncode == 0, output
    (pod,) = kube.pods().values()
    assert kube.pod_log(pod["metadata"]["name"]).count(f"credential: {CRED}") == 1  # received intact
    container = next(iter(kube.jobs().values()))["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "KANNON_LEAK_CRED", "valueFrom": {"secretKeyRef": {"name": name, "key": "KANNON_LEAK_CRED"}}} \
        in container["env"]  # fmt: skip
    assert run_secrets(kube) == {}, "the run's Secret outlived the run"
    assert holders(kube, CRED) == []
    assert CRED not in (tmp_path / "events.jsonl").read_text()


def test_a_reattaching_master_replaces_the_left_secret_with_its_values(kube: KubeEmulator, tmp_path: Path) -> None:
    first = build(kube, tmp_path, tmp_path / "events1.jsonl")
    try:
        kube.wait_for(lambda: running_pods(kube) or first.poll() is not None, timeout=120)
        assert first.poll() is None, first.communicate()[0]
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # no cleanup: the Secret and the running Job stay
        first.communicate()
    (name,) = run_secrets(kube)
    core = client.CoreV1Api(kube.api_client())  # the left Secret made stale: the next master writes its own values
    core.patch_namespaced_secret(name, "default", {"stringData": {"KANNON_LEAK_CRED": "stale"}})

    events = tmp_path / "events2.jsonl"
    second = build(kube, tmp_path, events)
    try:

        def adopted() -> bool:
            return events.exists() and "(adopted)" in events.read_text()

        kube.wait_for(lambda: adopted() or second.poll() is not None, timeout=120)
        assert second.poll() is None, second.communicate()[0]
        data = core.read_namespaced_secret(name, "default").data
        assert base64.b64decode(data["KANNON_LEAK_CRED"]).decode() == CRED
        assert [m for m, p, _ in kube.requests if p.endswith(f"/secrets/{name}")].count("PUT") == 1  # replaced
        (tmp_path / "release").touch()
        output, _ = second.communicate(timeout=120)
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
            second.communicate()
    assert second.returncode == 0, output
    assert run_secrets(kube) == {}


def test_a_master_that_may_not_create_secrets_stops_before_launching(kube: KubeEmulator, tmp_path: Path) -> None:
    kube.faults.forbid("create", "secrets")
    master = build(kube, tmp_path, tmp_path / "events.jsonl")
    try:
        output, _ = master.communicate(timeout=120)
    finally:
        if master.poll() is None:
            os.killpg(master.pid, signal.SIGKILL)
            master.communicate()
    assert master.returncode == 2, output
    lines = [ln for ln in output.splitlines() if "secrets" in ln]
    assert len(lines) == 1 and "may not create secrets" in lines[0] and "kannon k8s rbac" in lines[0], output
    assert "Traceback" not in output and CRED not in output
    assert not [p for m, p, _ in kube.requests if m == "POST" and p.endswith("/jobs")], "a Job was created"
    assert kube.jobs() == {}


# -- the backend on its own: precedence, owner, sweep ----------------------------------------------------------------
def start_executor(kube: KubeEmulator, tmp_path: Path, secrets: dict[str, str], **kw: Any) -> tuple[Any, Any]:
    from tests.e2e.k8s.test_k8s_backend import TEMPLATE, ScriptK8sExecutor
    from tests.support.events import Recorder

    template = copy.deepcopy(TEMPLATE)
    template["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "TOKEN", "value": "from-template"})
    executor = ScriptK8sExecutor(kw.pop("template_job", template), api_client=kube.api_client(), python=PY,
                                 retry_backoff=0.05, **kw)  # fmt: skip
    rec = Recorder(timeout=60.0)
    executor.start(RunInfo("run1", tmp_path / "run", secrets=secrets), rec)
    return executor, rec


def test_a_hint_env_wins_over_an_inherited_name_and_no_value_is_plain(kube: KubeEmulator, tmp_path: Path) -> None:
    from tests.e2e.k8s.test_k8s_backend import launch_of

    executor, rec = start_executor(kube, tmp_path, {"TOKEN": CRED, "REGION": "inherited-region"})
    try:
        digest = hashlib.sha256(CRED.encode()).hexdigest()  # the script itself must not carry the credential
        code = f"import hashlib, os; print(hashlib.sha256(os.environ['TOKEN'].encode()).hexdigest() == {digest!r}, "
        launch = launch_of(tmp_path, 1, code + "os.environ['REGION'])", env={"REGION": "from-hint"})
        executor.launch(launch)
        fin = rec.wait_finished(launch.key)
        assert fin.ok and fin.log_tail == ("True from-hint",)
        (job,) = kube.jobs().values()
        env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["TOKEN"] == {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": executor._secret.name,
                                                                                "key": "TOKEN"}}}  # fmt: skip
        assert env["REGION"] == {"name": "REGION", "value": "from-hint"}
        assert holders(kube, CRED) == [f"secrets/default/{executor._secret.name}"]
    finally:
        executor.close()
    assert run_secrets(kube) == {}


def test_in_a_cluster_the_secret_is_owned_by_the_master_and_strays_of_the_run_are_swept(
    kube: KubeEmulator, tmp_path: Path
) -> None:
    core = client.CoreV1Api(kube.api_client())
    container = {"name": "master", "image": "kannon-test:latest", "command": [PY, "-c", "import time; time.sleep(600)"]}
    master_job = {"metadata": {"name": "master"},
                  "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [container]}}}}  # fmt: skip
    client.BatchV1Api(kube.api_client()).create_namespaced_job("default", master_job)
    pod_name = kube.wait_for(lambda: next((n for n, p in kube.pods().items()
                                           if p["metadata"]["labels"].get("job-name") == "master"), None))  # fmt: skip
    stray = {"metadata": {"name": "old-prefix-env", "labels": {RUN_LABEL: "run1"}}, "stringData": {"TOKEN": "old"}}
    core.create_namespaced_secret("default", stray)
    other_run = {"metadata": {"name": "other-run-env", "labels": {RUN_LABEL: "run2"}}, "stringData": {"T": "x"}}
    core.create_namespaced_secret("default", other_run)
    executor, _ = start_executor(kube, tmp_path, {"TOKEN": CRED}, in_cluster=True, master_pod_name=pod_name,
                                 namespace="default")  # fmt: skip
    try:
        secrets = run_secrets(kube)
        assert set(secrets) == {executor._secret.name, "other-run-env"}  # the stray of run1 is gone
        (owner,) = secrets[executor._secret.name]["metadata"]["ownerReferences"]
        # the master's Job when it has one, as for the child Jobs: the GC removes the Secret with the master
        assert (owner["kind"], owner["name"]) == ("Job", "master")
        assert owner["uid"] == kube.jobs()["master"]["metadata"]["uid"]
    finally:
        executor.close()
    assert set(run_secrets(kube)) == {"other-run-env"}
