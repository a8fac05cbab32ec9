"""Backend configuration without a cluster: template from the master pod, RBAC, rate limit and retry wrapper,
construction errors, plan-time validation, the legacy constructor and the CLI options."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException, RESTResponse

from kannon import plugins
from kannon.backends.base import BackendError
from kannon.backends.kubernetes import (
    ApiCaller,
    K8sJobExecutor,
    TokenBucket,
    load_template,
    make_executor,
    owner_reference,
    render_rbac,
    template_from_pod,
)
from kannon.hints import Hints

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": "from-template"},
            "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "img:1"}]}}}}


@pytest.fixture
def no_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", "namespace": "from-context"}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return path


# -- the master's own pod as the child template -------------------------------------------------------------
def master_pod(owner_kind: str | None = "Job") -> client.V1Pod:
    refs = None if owner_kind is None else [client.V1OwnerReference(
        api_version="batch/v1", kind=owner_kind, name="master", uid="job-uid", controller=True)]
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name="master-x7k2p", namespace="ml", uid="pod-uid", owner_references=refs,
                                     labels={"job-name": "master"}),
        spec=client.V1PodSpec(
            service_account_name="kannon-master",
            image_pull_secrets=[client.V1LocalObjectReference(name="regcred")],
            containers=[client.V1Container(
                name="master", image="repo/pipeline:7", command=["python", "run.py"], args=["--all"],
                env=[client.V1EnvVar(name="AWS_REGION", value="x"),
                     client.V1EnvVar(name="POD_NAME", value_from=client.V1EnvVarSource(
                         field_ref=client.V1ObjectFieldSelector(field_path="metadata.name")))],
                resources=client.V1ResourceRequirements(requests={"cpu": "1"}, limits={"memory": "2Gi"}),
                volume_mounts=[client.V1VolumeMount(name="data", mount_path="/data"),
                               client.V1VolumeMount(name="kube-api-access-abcde",
                                                    mount_path="/var/run/secrets/kubernetes.io/serviceaccount")],
                liveness_probe=client.V1Probe(_exec=client.V1ExecAction(command=["true"])),
                ports=[client.V1ContainerPort(container_port=8080)],
            )],
            volumes=[client.V1Volume(name="data", persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                         claim_name="kannon-data")),
                     client.V1Volume(name="kube-api-access-abcde", projected=client.V1ProjectedVolumeSource(
                         sources=[]))],
        ),
    )


def test_template_from_master_pod_copies_what_a_child_needs_and_nothing_else() -> None:
    t = template_from_pod(master_pod(), client.ApiClient())
    podspec = t["spec"]["template"]["spec"]
    assert t["metadata"] == {"namespace": "ml"}
    assert podspec["serviceAccountName"] == "kannon-master"
    assert podspec["imagePullSecrets"] == [{"name": "regcred"}]
    assert podspec["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "kannon-data"}}]
    (c,) = podspec["containers"]
    assert c["image"] == "repo/pipeline:7"
    assert c["env"][1]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert c["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    assert c["resources"] == {"requests": {"cpu": "1"}, "limits": {"memory": "2Gi"}}
    assert not {"command", "args", "livenessProbe", "ports"} & set(c)
    assert "labels" not in t["metadata"]


def test_owner_is_the_masters_job_when_there_is_one() -> None:
    assert owner_reference(master_pod("Job")) == {"apiVersion": "batch/v1", "kind": "Job", "name": "master",
                                                  "uid": "job-uid"}
    assert owner_reference(master_pod(None)) == {"apiVersion": "v1", "kind": "Pod", "name": "master-x7k2p",
                                                 "uid": "pod-uid"}


# -- RBAC ---------------------------------------------------------------------------------------------------
# What the backend's calls need, written out from the Kubernetes API (verb = the RBAC verb of the request:
# POST create, GET on a name get, GET on a collection list, with ?watch=true watch, DELETE delete), not read back
# from RBAC_RULES. A new call of the backend needs a line here, with its reason.
NEEDED = {
    ("batch", "jobs", "create"): "launch a bullet as a Job",
    ("batch", "jobs", "get"): "read back a Job whose create answer was lost (409 AlreadyExists) before adopting it",
    ("batch", "jobs", "list"): "find the run's Jobs (re-attach) and start the Job watch from a resourceVersion",
    ("batch", "jobs", "watch"): "follow the run's Jobs to their end",
    ("batch", "jobs", "delete"): "cancel a bullet (Background propagation also removes its pods)",
    ("", "pods", "get"): "the master's own pod in a cluster: the child template and the ownerReference",
    ("", "pods", "list"): "the pods of a Job (why it failed) and the start of the pod watch",
    ("", "pods", "watch"): "follow pods for Pending/OOMKilled/Unschedulable reasons",
    ("", "pods/log", "get"): "the log tail of a failed bullet",
    ("coordination.k8s.io", "leases", "get"): "read the run lease: who holds it, and whether it ran out",
    ("coordination.k8s.io", "leases", "create"): "take the run lease (one master per run)",
    ("coordination.k8s.io", "leases", "update"): "renew the run lease, or take over one that ran out",
    ("coordination.k8s.io", "leases", "delete"): "give the run lease up at the end",
    ("", "secrets", "create"): "the run's Secret: the env_to_inherit values (and the spec key), never plain env",
    ("", "secrets", "update"): "replace the run's Secret a crashed master of the same run left (re-attach)",
    ("", "secrets", "list"): "sweep a Secret of the run left under another job_prefix",
    ("", "secrets", "delete"): "remove the run's Secret at the end",
    ("", "configmaps", "create"): "--k8s-code-via configmap: the run's code archive, mounted into the child pods",
    ("", "configmaps", "list"): "sweep a code ConfigMap of the run left with older code or another job_prefix",
    ("", "configmaps", "delete"): "remove the run's code ConfigMap at the end",
}
# Renewal happens a third of the lease's duration after it was taken, so a short build may end before it: the
# update is proven by tests/e2e/k8s/test_lease.py (a superseded holder noticing at its next renewal), not here.
# Likewise replacing the run's Secret needs a re-attach: tests/e2e/k8s/test_secrets_k8s.py proves it.
# The code ConfigMap needs --ship-code --k8s-code-via configmap: tests/e2e/k8s/test_ship_configmap_k8s.py proves it.
NOT_IN_EVERY_BUILD = {("coordination.k8s.io", "leases", "update"), ("", "secrets", "update"),
                      *(("", "configmaps", v) for v in ("create", "list", "delete"))}  # fmt: skip


def role_grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    """Every (api group, resource, verb) a Role grants: each rule's lists expanded, nothing taken from one entry."""
    return {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}  # fmt: skip


def request_verb(method: str, path: str, query: dict[str, str]) -> tuple[str, str, str] | None:
    """The RBAC (api group, resource, verb) of an API request (the apiserver's RequestInfo rules), None for the
    non-resource URLs (discovery, /version) that a namespaced Role does not govern."""
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) > 2:
        group, rest = "", parts[2:]
    elif parts[0] == "apis" and len(parts) > 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]
    resource = "/".join([rest[0], *rest[2:3]])  # a subresource: pods/log
    named = len(rest) > 1
    if method == "GET":
        verb = "watch" if query.get("watch", "").lower() in ("true", "1") else "get" if named else "list"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete" if named else
                "deletecollection"}[method]  # fmt: skip
    return group, resource, verb


def test_render_rbac_is_a_role_and_binding_for_exactly_what_the_backend_calls() -> None:
    role, binding = yaml.safe_load_all(render_rbac("ml", "kannon-master"))
    assert role["kind"] == "Role" and role["metadata"] == {"name": "kannon", "namespace": "ml"}
    assert role_grants(role) == set(NEEDED)
    assert binding["kind"] == "RoleBinding" and binding["roleRef"]["name"] == "kannon"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kannon-master", "namespace": "ml"}]


@pytest.mark.k8s
def test_every_request_of_a_real_build_is_one_the_rendered_role_grants(tmp_path: Path) -> None:
    """A build on the emulator that makes every kind of call the backend has: a Job create whose answer is lost
    (adopted), a failing bullet (its log read), a fail-fast cancel, a master in a cluster looking up its pod. Each
    request it made must be granted by `kannon k8s rbac`'s Role, and each line of NEEDED must have been used."""
    from kannon.result import KannonBuildError
    from kannon.scheduler import Kannon
    from kannon.testing import KubeEmulator
    from tests.support.tasks import Bullet, Join

    started = str(tmp_path / "slow.started")
    root = Join(parents=[Bullet(name="slow", sleep=120, started_file=started),
                         Bullet(name="bad", fail_times=9, counter_dir=str(tmp_path), wait_file=started)])  # fmt: skip
    template = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": "default"},
                "spec": {"template": {"spec": {"containers": [{
                    "name": "main", "image": "kannon-test:latest", "workingDir": str(tmp_path),
                    "env": [{"name": "PYTHONPATH", "value": str(REPO)}]}]}}}}  # fmt: skip
    with KubeEmulator(runtime="process", namespace="default") as kube:
        kube.faults.drop_responses(1, method="POST", path_regex="/jobs$")  # the Job is created, the answer is lost
        executor = K8sJobExecutor(template, api_client=kube.api_client(), python=sys.executable,
                                  retry_backoff=0.05, in_cluster=True, master_pod_name="master-0")  # fmt: skip
        # an inherited value: the run's Secret is made and removed
        with pytest.raises(KannonBuildError), pytest.MonkeyPatch.context() as mp:
            mp.setenv("KANNON_RBAC_TEST_TOKEN", "t0ken")
            Kannon(executor=executor, keep_going=False, env_to_inherit=["KANNON_RBAC_TEST_TOKEN"]).build(root)
        requests = list(kube.requests)
    role, _ = yaml.safe_load_all(render_rbac("default", "kannon-master"))
    used = {v for m, p, q in requests if (v := request_verb(m, p, q)) is not None}
    assert used - role_grants(role) == set(), "requests the rendered Role does not grant (403 in a real cluster)"
    unused = set(NEEDED) - NOT_IN_EVERY_BUILD - used
    assert unused == set(), "granted but never used by the build: a needless grant, or a gap in this test"


def test_template_file_read_and_its_errors_name_the_file(tmp_path: Path) -> None:
    # PyYAML is imported inside load_template (not at module level), so each path through it is exercised here
    good = tmp_path / "job.yaml"
    good.write_text(yaml.safe_dump(TEMPLATE))
    assert load_template(good) == TEMPLATE
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [1, 2\n")
    with pytest.raises(BackendError, match=r"bad\.yaml' is not valid YAML"):
        load_template(bad)
    with pytest.raises(BackendError, match=r"cannot read the Job template .*absent\.yaml"):
        load_template(tmp_path / "absent.yaml")


# -- rate limit and retries ---------------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_token_bucket_allows_a_burst_then_paces_to_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        assert bucket.take() == 0
    assert bucket.take() == pytest.approx(0.1)
    assert bucket.take() == pytest.approx(0.1)
    clock.now += 10  # idle: refills up to the burst, not beyond
    for _ in range(3):
        assert bucket.take() == 0
    assert bucket.take() > 0


def test_token_bucket_reserves_each_callers_turn_so_it_sleeps_once() -> None:
    """Callers that arrive together (the clock does not move while they wait, as for a pool of threads) each get
    their own turn, one sleep each, in arrival order; none wakes to find its token taken by another."""
    clock = FakeClock()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        assert len(sleeps) < 50, "a caller woke without its token and slept again"

    bucket = TokenBucket(rate=10, burst=3, clock=clock, sleep=sleep)
    waits = [bucket.take() for _ in range(8)]
    assert waits == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert sleeps == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])  # one sleep per waiting caller
    clock.now += 0.5  # they have all had their turn: the balance is back to zero, then refills to the burst
    assert bucket.take() == pytest.approx(0.1)
    clock.now += 10
    assert [bucket.take() for _ in range(3)] == [0, 0, 0]


def http_error(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> ApiException:
    body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                       "reason": reason, "code": status}).encode()
    resp = urllib3.HTTPResponse(body=body, headers=headers or {}, status=status, reason=reason,
                                preload_content=True)
    return ApiException(http_resp=RESTResponse(resp))


def caller(clock: FakeClock, **kw: object) -> ApiCaller:
    return ApiCaller("ml", qps=1000, burst=1000, clock=clock, sleep=clock.sleep, **kw)  # type: ignore[arg-type]


def test_retries_429_honouring_retry_after_then_succeeds() -> None:
    clock = FakeClock()
    api = caller(clock, backoff=0.01)
    errors = [http_error(429, "TooManyRequests", "slow down", {"Retry-After": "3"}),
              http_error(503, "ServiceUnavailable", "etcd"), urllib3.exceptions.ProtocolError("reset")]

    def flaky() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    assert api.call("create", "jobs", flaky) == "ok"
    assert api.calls == 4 and api.retries == 3
    assert clock.slept[0] >= 3  # Retry-After, not the 0.01 s backoff
    assert all(s < 3 for s in clock.slept[1:])


def test_403_names_the_verb_resource_and_the_rbac_command() -> None:
    def forbidden() -> None:
        raise http_error(403, "Forbidden", 'jobs.batch is forbidden: User "system:serviceaccount:ml:sa" cannot '
                         'create resource "jobs"')

    with pytest.raises(BackendError) as info:
        caller(FakeClock()).call("create", "jobs", forbidden)
    text = str(info.value)
    assert "may not create jobs" in text and "namespace 'ml'" in text and "kannon k8s rbac" in text
    assert "system:serviceaccount:ml:sa" in text


def test_errors_that_are_not_retryable_pass_through_at_once() -> None:
    calls = []

    def invalid() -> None:
        calls.append(1)
        raise http_error(422, "Invalid", "spec.template.spec.containers[0].image: Required value")

    with pytest.raises(ApiException) as info:
        caller(FakeClock()).call("create", "jobs", invalid)
    assert info.value.status == 422 and len(calls) == 1


def test_persistent_5xx_becomes_a_backend_error_after_bounded_attempts() -> None:
    clock = FakeClock()

    def down() -> None:
        raise http_error(503, "ServiceUnavailable", "apiserver restarting")

    with pytest.raises(BackendError, match="kept failing on list jobs.*503"):
        caller(clock, attempts=4).call("list", "jobs", down)
    assert len(clock.slept) == 3


def test_once_the_api_server_stayed_away_past_the_retry_window_later_calls_try_once() -> None:
    """Seen: the API server went away under a run of 100 running bullets; the lost watch ended every attempt with a
    delete by name, and each delete spent the whole retry window again (8 attempts, ~60 s; 8 at a time), so the
    master needed ~13 minutes to end, a SIGTERM included. After one call has spent the window without reaching the
    server, later calls try once and fail at once; a call that gets through restores the full retries."""
    clock = FakeClock()
    api = caller(clock, attempts=5)
    tries: list[str] = []

    def refused() -> None:
        tries.append("delete")
        raise urllib3.exceptions.ProtocolError("Connection refused")

    with pytest.raises(BackendError, match="cannot reach the Kubernetes API for delete jobs after 5 attempts"):
        api.call("delete", "jobs", refused)
    assert len(tries) == 5
    slept = len(clock.slept)
    for _ in range(3):
        with pytest.raises(BackendError, match="unreachable for the last .* tried once"):
            api.call("delete", "jobs", refused)
    assert len(tries) == 8 and len(clock.slept) == slept  # one try each, no backoff
    assert api.call("get", "jobs", lambda: "ok") == "ok"  # it is back
    tries.clear()
    with pytest.raises(BackendError, match="after 5 attempts"):
        api.call("delete", "jobs", refused)
    assert len(tries) == 5


def test_persistent_5xx_counts_as_away_but_429_does_not() -> None:
    clock = FakeClock()
    api = caller(clock, attempts=3)
    tries: list[int] = []

    def fails(status: int) -> None:
        tries.append(status)
        raise http_error(status, "x", "y")

    with pytest.raises(BackendError):
        api.call("list", "jobs", fails, 429)  # overload: slow down, not gone
    with pytest.raises(BackendError):
        api.call("list", "jobs", fails, 429)
    assert tries == [429] * 6
    tries.clear()
    with pytest.raises(BackendError):
        api.call("list", "jobs", fails, 503)
    with pytest.raises(BackendError, match="tried once"):
        api.call("list", "jobs", fails, 503)
    assert tries == [503] * 4


# -- construction -------------------------------------------------------------------------------------------
def test_outside_a_cluster_without_kubeconfig_the_error_says_what_to_set(no_kubeconfig: None) -> None:
    with pytest.raises(BackendError, match="KUBECONFIG.*api_client"):
        K8sJobExecutor(template_job=TEMPLATE)


def test_outside_a_cluster_without_template_the_error_says_what_to_pass(kubeconfig: Path) -> None:
    with pytest.raises(BackendError, match="needs a Job template outside a cluster.*--job-template"):
        K8sJobExecutor()


def test_namespace_argument_then_template_then_kubeconfig_context(kubeconfig: Path) -> None:
    assert K8sJobExecutor(TEMPLATE, namespace="arg").namespace == "arg"
    assert K8sJobExecutor(TEMPLATE).namespace == "from-template"
    no_ns = {**TEMPLATE, "metadata": {}}
    executor = K8sJobExecutor(no_ns)
    assert executor.namespace == "from-context"
    assert executor.api_client.configuration.host == "http://127.0.0.1:9"


def test_validate_rejects_what_a_job_cannot_express(kubeconfig: Path) -> None:
    executor = K8sJobExecutor(TEMPLATE)
    assert executor.validate("T", Hints(cpu="500m", memory="1Gi", gpu=1, tolerations=[
        {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}])) == []
    # Reserved KANNON_* names in Hints.env are the core's plan-time check, for every backend (test_scheduler.py).
    problems = executor.validate("T", Hints(tolerations=[
        {"key": "k", "operator": "Maybe", "effect": "Sometimes"}], node_selector={"pool": "not valid!"}))
    text = "\n".join(problems)
    assert "operator" in text and "effect" in text and "label value" in text
    assert executor.validate("T", Hints(memory="lots")) != []


def test_spec_transport_inline_when_small(kubeconfig: Path) -> None:
    executor = K8sJobExecutor(TEMPLATE, inline_spec_limit=1000)
    assert executor.spec_transport(1000) == "inline"
    assert executor.spec_transport(1001) == "workspace"


def test_legacy_constructor_arguments(kubeconfig: Path, tmp_path: Path) -> None:
    import luigi.configuration

    ini = tmp_path / "dynamic.ini"
    ini.write_text("[kannon_legacy_test]\nvalue = 42\n")
    template = client.V1Job(metadata=client.V1ObjectMeta(namespace="legacy-ns"), spec=client.V1JobSpec(
        template=client.V1PodTemplateSpec(spec=client.V1PodSpec(containers=[client.V1Container(
            name="c", image="img")]))))
    api = client.BatchV1Api(client.ApiClient())
    executor = make_executor(legacy=True, api_instance=api, template_job=template, job_prefix="My_Prefix",
                             path_child_script="./run_child.py", master_pod_name="master",
                             master_pod_uid="uid-1", dynamic_config_paths=[str(ini)])
    assert isinstance(executor, K8sJobExecutor)
    assert executor.api_client is api.api_client
    assert executor.namespace == "legacy-ns" and executor.job_prefix == "My_Prefix"
    assert executor.owner == {"apiVersion": "v1", "kind": "Pod", "name": "master", "uid": "uid-1"}
    # the dynamic config joins the master's luigi config, which kannon ships to every child
    try:
        assert luigi.configuration.get_config().get("kannon_legacy_test", "value") == "42"
    finally:
        luigi.configuration.LuigiConfigParser._config_paths.remove(str(ini))
        luigi.configuration.get_config().remove_section("kannon_legacy_test")
    with pytest.raises(ValueError, match=r"\.ini"):
        make_executor(legacy=True, api_instance=api, template_job=template, dynamic_config_paths=["conf.yaml"])


def test_registered_as_the_kubernetes_backend_with_cli_options(kubeconfig: Path, tmp_path: Path) -> None:
    plugins.reset_for_tests()
    spec = plugins.get_backend("kubernetes")
    parser = argparse.ArgumentParser()
    assert spec.add_options is not None
    spec.add_options(parser.add_argument_group("kubernetes"))
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(TEMPLATE))
    ns = parser.parse_args(["--job-template", str(path), "--namespace", "cli", "--job-prefix", "nightly",
                            "--pending-timeout", "60", "--job-ttl", "120", "--k8s-python", "python3.12"])
    executor = spec.from_cli(ns)
    assert isinstance(executor, K8sJobExecutor)
    assert (executor.namespace, executor.job_prefix, executor.pending_timeout, executor.ttl, executor.python) == (
        "cli", "nightly", 60.0, 120, "python3.12")


def test_tolerations_the_api_server_would_refuse_are_refused_at_plan_time(kubeconfig: Path) -> None:
    """ValidateTolerations as kube-apiserver v1.33.13 applies it (the same cases the emulator's fidelity test sends
    to it): an empty key only with Exists, tolerationSeconds only with NoExecute, a key that is a label name."""
    executor = K8sJobExecutor(TEMPLATE)
    ok = [{"operator": "Exists"}, {"key": "e", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
          {"key": "example.com/gpu", "value": "a100", "effect": "NoSchedule"}]  # fmt: skip
    assert executor.validate("T", Hints(tolerations=ok)) == []
    cases = {
        "operator must be Exists when the key is empty": {"operator": "Equal", "value": "x"},
        "tolerationSeconds needs effect NoExecute": {"key": "b", "effect": "NoSchedule", "tolerationSeconds": 10},
        "key is not a valid label name": {"key": "bad key!", "operator": "Exists"},
        "value is not a valid label value": {"key": "v", "value": "not valid!"},
    }
    for expected, toleration in cases.items():
        problems = executor.validate("T", Hints(tolerations=[toleration]))
        assert any(expected in p for p in problems), (toleration, problems)
