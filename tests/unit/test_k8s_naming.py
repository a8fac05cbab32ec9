"""Job names, labels and the Job body built from a template (no API server involved)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from kubernetes import client

from kannon.backends.base import BackendError, Launch
from kannon.backends.kubernetes import (
    LABEL_ATTEMPT,
    LABEL_FAMILY,
    LABEL_RUN,
    LABEL_TASK,
    build_job,
    job_name,
    label_value,
    load_template,
)
from kannon.hints import Hints

DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
TASK_ID = "0123456789abcdef0123456789abcdef"


def make_launch(**kw: object) -> Launch:
    values: dict[str, object] = dict(
        key=f"{TASK_ID}-1",
        run_id="3f2a9c1b0d4e",
        task_id=TASK_ID,
        family="TrainModel",
        attempt=1,
        child_args=("run-task", "env:KANNON_SPEC", TASK_ID, "ab" * 32),
        env={"KANNON_SPEC": "eJxLz8..."},
        hints=Hints(),
        log_path=Path("/tmp/x.log"),
        labels={"kannon.io/run-id": "3f2a9c1b0d4e"},
    )
    values.update(kw)
    return Launch(**values)  # type: ignore[arg-type]


TEMPLATE = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "template", "namespace": "ml", "labels": {"team": "ds"}},
    "spec": {
        "backoffLimit": 6,
        "template": {
            "metadata": {"labels": {"team": "ds"}},
            "spec": {
                "restartPolicy": "OnFailure",
                "containers": [
                    {
                        "name": "main",
                        "image": "repo/app:1",
                        "args": ["--x"],
                        "env": [{"name": "A", "value": "1"}, {"name": "KEEP", "value": "k"}],
                        "resources": {"requests": {"cpu": "100m"}, "limits": {"nvidia.com/gpu": "1"}},
                    },
                    {"name": "sidecar", "image": "repo/side:1"},
                ],
            },
        },
    },
}


def test_job_name_is_deterministic_and_distinct_per_attempt_task_and_run() -> None:
    a = job_name("kannon", "run1", TASK_ID, 1, "TrainModel")
    assert a == job_name("kannon", "run1", TASK_ID, 1, "TrainModel")
    assert a.startswith("kannon-trainmodel-") and a.endswith("-1")
    others = {
        job_name("kannon", "run1", TASK_ID, 2, "TrainModel"),
        job_name("kannon", "run2", TASK_ID, 1, "TrainModel"),
        job_name("kannon", "run1", "f" * 32, 1, "TrainModel"),
    }
    assert a not in others and len(others) == 3


@given(
    prefix=st.text(max_size=100),
    family=st.text(max_size=200),
    run=st.text(max_size=40),
    task=st.text(min_size=1, max_size=64),
    attempt=st.integers(min_value=1, max_value=10**6),
)
def test_job_name_is_always_a_valid_dns_label(prefix: str, family: str, run: str, task: str, attempt: int) -> None:
    name = job_name(prefix, run, task, attempt, family)
    assert len(name.encode()) <= 63
    assert DNS_1123.match(name), name


@given(st.text(max_size=300))
def test_label_value_is_always_valid_and_keeps_valid_values(text: str) -> None:
    value = label_value(text)
    assert len(value) <= 63 and LABEL.match(value), value
    if len(text) <= 63 and LABEL.match(text):
        assert value == text


def test_label_value_of_distinct_long_values_stays_distinct() -> None:
    a, b = "x" * 70 + "a", "x" * 70 + "b"
    assert label_value(a) != label_value(b)
    assert label_value("my.module:Task Name") != label_value("my.module-Task-Name")


def test_build_job_merges_launch_into_template() -> None:
    hints = Hints(
        cpu=0.5,
        memory="1Gi",
        gpu=2,
        image="repo/gpu:2",
        node_selector={"pool": "gpu"},
        tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        env={"A": "2"},
        timeout=90.5,
    )
    launch = make_launch(hints=hints, env={"KANNON_SPEC": "spec", "A": "3"})
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "master", "uid": "u-1"}
    job = build_job(
        TEMPLATE,
        launch,
        name="kannon-x-1",
        namespace="other",
        python="/opt/py/bin/python3",
        owner=owner,
        ttl_seconds=600,
    )
    meta, spec = job["metadata"], job["spec"]
    assert meta["name"] == "kannon-x-1" and meta["namespace"] == "other"
    assert meta["labels"]["team"] == "ds"
    assert meta["labels"][LABEL_RUN] == "3f2a9c1b0d4e" and meta["labels"][LABEL_TASK] == TASK_ID
    assert meta["labels"][LABEL_FAMILY] == "TrainModel" and meta["labels"][LABEL_ATTEMPT] == "1"
    assert meta["annotations"]["kannon.io/task-id"] == TASK_ID
    assert meta["ownerReferences"] == [owner]
    assert spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] == 600
    assert spec["activeDeadlineSeconds"] == 91
    pod = spec["template"]
    assert pod["metadata"]["labels"][LABEL_TASK] == TASK_ID and pod["metadata"]["labels"]["team"] == "ds"
    podspec = pod["spec"]
    assert podspec["restartPolicy"] == "Never"
    assert podspec["nodeSelector"] == {"pool": "gpu"}
    assert podspec["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    main = podspec["containers"][0]
    assert main["command"] == ["/opt/py/bin/python3", "-m", "kannon", *launch.child_args]
    assert "args" not in main
    assert main["image"] == "repo/gpu:2"
    assert main["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert main["resources"]["limits"] == {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "2"}
    # launch env wins over hint env, which wins over the template; order of existing entries is kept
    assert main["env"] == [
        {"name": "A", "value": "3"},
        {"name": "KEEP", "value": "k"},
        {"name": "KANNON_SPEC", "value": "spec"},
        # the child-result record goes to the termination message; the container's cgroup is the attempt's own
        {"name": "KANNON_RESULT_PATH", "value": "/dev/termination-log"},
        {"name": "KANNON_OWN_CONTAINER", "value": "1"},
    ]
    assert (main["terminationMessagePath"], main["terminationMessagePolicy"]) == ("/dev/termination-log", "File")
    assert podspec["containers"][1] == {"name": "sidecar", "image": "repo/side:1"}
    # the template itself is untouched
    assert TEMPLATE["spec"]["template"]["spec"]["containers"][0]["args"] == ["--x"]  # type: ignore[index]
    # a body the real client accepts: it deserializes into a V1Job with the same content
    model = client.ApiClient()._ApiClient__deserialize(job, "V1Job")  # type: ignore[attr-defined]
    assert model.spec.template.spec.containers[0].command[0] == "/opt/py/bin/python3"


def test_build_job_gpu_zero_removes_template_gpu_and_container_can_be_chosen() -> None:
    job = build_job(TEMPLATE, make_launch(hints=Hints(gpu=0)), name="n", namespace="ml", container="sidecar")
    containers = job["spec"]["template"]["spec"]["containers"]
    assert "command" not in containers[0]
    assert containers[1]["command"][:3] == ["python", "-m", "kannon"]
    job = build_job(TEMPLATE, make_launch(hints=Hints(gpu=0)), name="n", namespace="ml")
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "100m"}}


def test_template_with_command_is_rejected_with_advice() -> None:
    template = yaml.safe_load(yaml.safe_dump(TEMPLATE))
    template["spec"]["template"]["spec"]["containers"][0]["command"] = ["bash", "-c", "run"]
    with pytest.raises(BackendError, match="sets `command`.*Remove `command`"):
        build_job(template, make_launch(), name="n", namespace="ml")


def test_template_copied_from_an_existing_job_loses_controller_fields() -> None:
    template = yaml.safe_load(yaml.safe_dump(TEMPLATE))
    template["metadata"].update(uid="u", resourceVersion="9", creationTimestamp="2026-01-01T00:00:00Z")
    template["spec"]["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}}
    template["spec"]["template"]["metadata"]["labels"].update({"controller-uid": "u", "job-name": "template"})
    template["status"] = {"succeeded": 1}
    job = build_job(template, make_launch(), name="n", namespace="ml")
    assert "selector" not in job["spec"] and "status" not in job
    assert not {"uid", "resourceVersion", "creationTimestamp"} & set(job["metadata"])
    assert "controller-uid" not in job["spec"]["template"]["metadata"]["labels"]
    assert "job-name" not in job["spec"]["template"]["metadata"]["labels"]


def test_load_template_from_v1job_dict_and_yaml(tmp_path: Path) -> None:
    model = client.V1Job(
        metadata=client.V1ObjectMeta(namespace="ml"),
        spec=client.V1JobSpec(
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[client.V1Container(name="main", image="repo/app:1", image_pull_policy="IfNotPresent")],
                )
            )
        ),
    )
    from_model = load_template(model)
    assert from_model["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    path = tmp_path / "job.yaml"
    path.write_text("# a comment\n" + yaml.safe_dump(from_model))
    assert load_template(path) == from_model
    assert load_template(str(path)) == from_model
    assert load_template(from_model) == from_model


def test_load_template_errors_say_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="V1Job.to_dict"):
        load_template(
            client.V1Job(
                spec=client.V1JobSpec(
                    template=client.V1PodTemplateSpec(
                        spec=client.V1PodSpec(containers=[client.V1Container(name="m", image="i")])
                    )
                )
            ).to_dict()
        )
    with pytest.raises(BackendError, match="cannot read"):
        load_template(tmp_path / "missing.yaml")
    (tmp_path / "two.yaml").write_text("kind: Job\n---\nkind: Job\n")
    with pytest.raises(BackendError, match="exactly one Job"):
        load_template(tmp_path / "two.yaml")
    with pytest.raises(BackendError, match="containers"):
        load_template({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {}}}})
    with pytest.raises(BackendError, match="must be a V1Job"):
        load_template(42)
