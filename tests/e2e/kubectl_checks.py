"""The kubectl checks of docs/real-clusters §2, shared by the emulator's tier (tests/e2e/k8s/test_kubectl_tier.py) and
the real control plane's (tests/e2e/upstream/test_kubectl.py, pods on kannon's node): each tier calls them with its
own ``kubectl`` (a callable running the machine's real kubectl against its server, in its namespace) and the pod spec
fields its server needs. Expected outputs are what kubectl prints against upstream v1.33.13.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

import yaml

from tests.support.procs import wait_until

WAIT = 120


class Kubectl(Protocol):
    def __call__(self, *args: str, stdin: str | None = None,
                 check: bool = True) -> subprocess.CompletedProcess[str]: ...  # fmt: skip


def manifest(name: str, code: str = "print('hello from the pod')", pod: dict[str, Any] | None = None,
             **spec: Any) -> str:  # fmt: skip
    """A one-pod batch/v1 Job running ``python -S -c code``; ``pod`` adds pod spec fields (e.g. a nodeSelector)."""
    ctr = {"name": "main", "image": "python:3.11-slim", "command": [sys.executable, "-S", "-c", code]}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [ctr], **(pod or {})}}, **spec},
    }
    return yaml.safe_dump(job)


def check_apply(kubectl: Kubectl, pod: dict[str, Any] | None = None) -> None:
    """`kubectl apply`: created, unchanged, configured; a misspelt field refused by server-side strict validation."""
    assert kubectl("apply", "-f", "-", stdin=manifest("applied", pod=pod, suspend=True)).stdout.strip() == (
        "job.batch/applied created")  # fmt: skip
    assert kubectl("apply", "-f", "-", stdin=manifest("applied", pod=pod, suspend=True)).stdout.strip() == (
        "job.batch/applied unchanged")  # fmt: skip
    # Resumed: on the real control plane its pod then really runs (and is removed with the namespace).
    assert kubectl("apply", "-f", "-", stdin=manifest("applied", pod=pod, suspend=False)).stdout.strip() == (
        "job.batch/applied configured")  # fmt: skip
    bad = yaml.safe_load(manifest("misspelt", pod=pod))
    bad["spec"]["template"]["spec"]["restartPolicyy"] = "Never"
    refused = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(bad), check=False)
    assert refused.returncode != 0
    assert 'unknown field "spec.template.spec.restartPolicyy"' in refused.stderr
    assert "misspelt" not in kubectl("get", "jobs", "-o", "name").stdout


def check_explain(kubectl: Kubectl) -> None:
    out = kubectl("explain", "job.spec.suspend").stdout
    assert "FIELD: suspend <boolean>" in out and "Job controller should create Pods" in out


def check_job_lifecycle(kubectl: Kubectl, namespace: str, pod: dict[str, Any] | None = None) -> None:
    """get (the server's tables), wait, logs, describe and delete of a Job that runs, and of a suspended one."""
    kubectl("apply", "-f", "-", stdin=manifest("hello", pod=pod))
    kubectl("apply", "-f", "-", stdin=manifest("parked", pod=pod, suspend=True))
    kubectl("wait", "--for=condition=complete", "job/hello", f"--timeout={WAIT}s")
    kubectl("wait", "--for=condition=suspended", "job/parked", f"--timeout={WAIT}s")

    jobs = kubectl("get", "jobs").stdout.splitlines()
    assert jobs[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    rows = {line.split()[0]: line.split() for line in jobs[1:]}
    assert rows["hello"][1:3] == ["Complete", "1/1"]
    assert rows["parked"][1:3] == ["Suspended", "0/1"] and len(rows["parked"]) == 4  # no DURATION before a start
    pods = kubectl("get", "pods", "-l", "job-name=hello").stdout.splitlines()
    assert pods[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    (pod_row,) = pods[1:]
    assert pod_row.split()[1:4] == ["0/1", "Completed", "0"]
    wide = kubectl("get", "pods", "-o", "wide").stdout.splitlines()[0].split()
    assert wide[5:7] == ["IP", "NODE"]

    assert kubectl("logs", "job/hello").stdout == "hello from the pod\n"
    described = kubectl("describe", "job", "hello").stdout  # the column width depends on the longest label
    assert re.search(r"Pods Statuses:\s+0 Active \(0 Ready\) / 1 Succeeded / 0 Failed", described)

    out = kubectl("delete", "job", "hello").stdout  # kubectl deletes in the background and waits for the Job
    assert out.strip() == 'job.batch "hello" deleted'
    kubectl("wait", "--for=delete", "pod", "-l", "job-name=hello", f"--timeout={WAIT}s")
    gone = kubectl("get", "pods", "-l", "job-name=hello").stderr.strip()
    assert gone == f"No resources found in {namespace} namespace."


def bullet_code(flag: Path) -> str:
    """A bullet's script: one line at once, then it runs until ``flag`` exists (the test decides when it ends)."""
    return (f"import os, time\nprint('bullet says hi', flush=True)\n"
            f"while not os.path.exists({str(flag)!r}): time.sleep(0.02)\nprint('done')")  # fmt: skip


def check_running_bullet(kubectl: Kubectl) -> str:
    """kubectl sees the one running bullet (``bullet_code``): its Job, its pod, its log; returns the Job's name."""

    def job_names() -> list[str]:
        return kubectl("get", "jobs", "-o", "name").stdout.split()

    (name,) = (n.removeprefix("job.batch/") for n in wait_until(job_names, WAIT, "the bullet's Job", max_delay=0.2))
    wait_until(lambda: "bullet says hi" in kubectl("logs", f"job/{name}", check=False).stdout, WAIT,
               "the bullet's first line through kubectl logs", max_delay=0.2)  # fmt: skip
    row = kubectl("get", "job", name).stdout.splitlines()[1].split()
    assert row[:3] == [name, "Running", "0/1"]
    pod_row = kubectl("get", "pods", "-l", f"job-name={name}").stdout.splitlines()[1].split()
    assert pod_row[1:4] == ["1/1", "Running", "0"]
    # The Job's status.ready follows its pod's Ready condition: upstream's Job controller batches pod updates
    # (about a second later), the emulator's at once; either way the count arrives.
    wait_until(lambda: re.search(r"Pods Statuses:\s+1 Active \(1 Ready\) / 0 Succeeded / 0 Failed",
                                 kubectl("describe", "job", name).stdout), WAIT, "describe's 1 Ready pod",
               max_delay=0.2)  # fmt: skip
    return name


BUILD_PIPELINE = """
import os, time
import kannon

class KubectlSeen(kannon.TaskOnBullet[str]):
    def run(self) -> None:
        print("bullet says hi", flush=True)
        while not os.path.exists({flag!r}):
            time.sleep(0.02)
        self.dump("done")

root = KubectlSeen()
"""


def build_pipeline(flag: Path) -> str:
    """A pipeline of one bullet that prints ``bullet says hi`` and runs until ``flag`` exists."""
    return BUILD_PIPELINE.format(flag=str(flag))


def check_bullet_of_a_running_build(kubectl: Kubectl, build: subprocess.Popen[str], flag: Path) -> None:
    """``build`` (``kannon build`` of ``build_pipeline(flag)``) runs: kubectl sees its bullet, then it succeeds."""
    check_running_bullet(kubectl)
    assert build.poll() is None, build.communicate()[0]
    flag.touch()
    out, _ = build.communicate(timeout=WAIT)
    assert build.returncode == 0, out
