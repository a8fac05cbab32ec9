"""The original kannon's constructor keeps working (mapped onto the Kubernetes backend, with a warning)."""

from __future__ import annotations

import pytest
from kubernetes import client

from kannon import Kannon
from kannon.backends.kubernetes import K8sJobExecutor

TEMPLATE = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "template", "namespace": "batch"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "main", "image": "pipeline:1"}]}}}}  # fmt: skip


def test_positional_form_of_kannon_0_1() -> None:
    api = client.BatchV1Api(client.ApiClient())
    with pytest.warns(DeprecationWarning, match="child script"):
        k = Kannon(api, TEMPLATE, "legacy-prefix", "./run_child.py", ["HOME"])
    assert isinstance(k.executor, K8sJobExecutor)
    assert k.executor.job_prefix == "legacy-prefix"
    assert k.env_to_inherit == ("HOME",) and k.retries == 0 and k.keep_going is True


def test_keyword_form_maps_max_child_jobs() -> None:
    api = client.BatchV1Api(client.ApiClient())
    with pytest.warns(DeprecationWarning):
        k = Kannon(api_instance=api, template_job=TEMPLATE, job_prefix="p", path_child_script="x.py",
                   env_to_inherit=["HOME"], max_child_jobs=7)  # fmt: skip
    assert isinstance(k.executor, K8sJobExecutor) and k.max_parallel == 7


def test_a_non_executor_is_refused_clearly() -> None:
    with pytest.raises(TypeError, match="must be a kannon Executor"):
        Kannon(object())  # type: ignore[arg-type]
