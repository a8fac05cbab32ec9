"""Bad input to `kannon build`: each case gives exit code 2, one message naming the problem, no traceback, and
nothing is launched (no `launched` event, no Job created, no container)."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from kannon.backends.docker import LABEL_MANAGED, LABEL_RUN
from kannon.handoff import unique_id
from kannon.scheduler.ids import run_id as make_run_id
from kannon.testing import KubeEmulator
from tests.e2e.docker.support import python_volumes
from tests.faults.badroots import Fine
from tests.faults.figures import Figures
from tests.faults.harness import PY, REPO, EventTail, job_template

GOOD = "tests.faults.badroots:fine"


@dataclass
class Case:
    name: str
    args: list[str]
    expect: str  # a piece of the one message: what it names
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> content, written before the run


@dataclass
class Outcome:
    case: Case
    code: int
    stderr: str
    stdout: str
    launched: int


def run_case(tmp_path: Path, case: Case) -> Outcome:
    workdir = tmp_path / case.name
    workdir.mkdir()
    for rel, content in case.files.items():
        path = workdir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    events = workdir / "events.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO), **case.env}
    done = subprocess.run([PY, "-m", "kannon", "build", *case.args, "--events", str(events)], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    tail = EventTail(events)
    tail.poll()
    return Outcome(case, done.returncode, done.stderr, done.stdout, tail.count("launched"))


def check(outcome: Outcome, figures: Figures) -> list[str]:
    """Problems with how a bad input was handled (empty: rejected cleanly)."""
    o, problems = outcome, []
    # the progress line "kannon: run <id> started on <backend>" (printed when a check runs at executor start) is
    # not an error message
    messages = [ln for ln in o.stderr.splitlines() if ln.startswith("kannon:") and " started on " not in ln]
    if o.code != 2:
        problems.append(f"exit code {o.code}, not 2")
    if "Traceback" in o.stderr + o.stdout:
        problems.append("a traceback was printed")
    if len(messages) != 1:
        problems.append(f"{len(messages)} 'kannon:' messages, not one")
    if o.case.expect not in o.stderr:
        problems.append(f"the message does not name the problem ({o.case.expect!r})")
    if o.launched:
        problems.append(f"{o.launched} task(s) launched")
    figures.bad_input(rejected=not problems)
    return [f"{o.case.name}: {p}\n{o.stderr[-1500:]}" for p in problems]


def run_cases(tmp_path: Path, cases: list[Case], figures: Figures) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda c: run_case(tmp_path, c), cases))
    problems = [p for o in outcomes for p in check(o, figures)]
    assert not problems, "\n\n".join(problems)


def test_bad_targets_configs_and_backends(tmp_path: Path, figures: Figures) -> None:
    cases = [
        Case("unknown-backend", [GOOD, "--backend", "nosuch"], "unknown backend 'nosuch'"),
        Case("missing-config", [GOOD, "--config", "missing.cfg"], "missing.cfg does not exist"),
        Case("root-is-a-number", ["tests.faults.badroots:number"], "not a gokart task instance"),
        Case("root-is-a-class", ["tests.faults.badroots:klass"], "is the class TaskOnKart"),
        Case("root-function-returns-none", ["tests.faults.badroots:returns_none"], "NoneType"),
        Case("root-missing-attribute", ["tests.faults.badroots:nothing_here"], "no attribute 'nothing_here'"),
        Case("root-module-missing", ["no_such_module_here:root"], "cannot import 'no_such_module_here'"),
        Case("root-file-missing", ["missing_pipeline.py:root"], "missing_pipeline.py does not exist"),
        Case("target-without-colon", ["tests.faults.badroots"], "must look like"),
        Case("invalid-hints", ["tests.faults.badroots:greedy"], "Greedy("),
        Case("requires-cycle", ["tests.faults.badroots:loop"], "cycle"),
    ]
    run_cases(tmp_path, cases, figures)


@pytest.mark.k8s
def test_bad_kubernetes_configuration(tmp_path: Path, figures: Figures) -> None:
    with KubeEmulator(runtime="process", namespaces=["default"]) as kube:
        kubeconfig = str(kube.write_kubeconfig(tmp_path / "kubeconfig"))
        good_template = yaml.safe_load(job_template(tmp_path).read_text())
        with_command = yaml.safe_load(job_template(tmp_path).read_text())
        with_command["spec"]["template"]["spec"]["containers"][0]["command"] = ["sh", "-c", "echo hi"]
        no_containers = {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {"containers": []}}}}
        k8s = [GOOD, "--backend", "kubernetes", "--k8s-python", PY]
        ok_env = {"KUBECONFIG": kubeconfig}
        cases = [
            Case("template-not-yaml", [*k8s, "--job-template", "job.yaml"], "job.yaml", ok_env,
                 {"job.yaml": "spec: [unclosed\n  - : :"}),
            Case("template-a-list", [*k8s, "--job-template", "job.yaml"], "job.yaml", ok_env,
                 {"job.yaml": "- a\n- b\n"}),
            Case("template-missing", [*k8s, "--job-template", "nope.yaml"], "nope.yaml", ok_env),
            Case("template-sets-command", [*k8s, "--job-template", "job.yaml"], "command", ok_env,
                 {"job.yaml": yaml.safe_dump(with_command)}),
            Case("template-no-containers", [*k8s, "--job-template", "job.yaml"], "container", ok_env,
                 {"job.yaml": yaml.safe_dump(no_containers)}),
            Case("wrong-namespace", [*k8s, "--job-template", "job.yaml", "--namespace", "no-such-ns"], "no-such-ns",
                 ok_env, {"job.yaml": yaml.safe_dump(good_template)}),
            Case("kubeconfig-garbage", [*k8s, "--job-template", "job.yaml"], "kubeconfig",
                 {"KUBECONFIG": "garbage.conf"}, {"job.yaml": yaml.safe_dump(good_template),
                                                  "garbage.conf": "\x00\x01 not: [a kubeconfig"}),
            Case("kubeconfig-missing", [*k8s, "--job-template", "job.yaml"], "kubeconfig",
                 {"KUBECONFIG": "does-not-exist.conf"}, {"job.yaml": yaml.safe_dump(good_template)}),
            Case("kubeconfig-a-directory", [*k8s, "--job-template", "job.yaml"], "kubeconfig",
                 {"KUBECONFIG": "."}, {"job.yaml": yaml.safe_dump(good_template)}),
        ]  # fmt: skip
        run_cases(tmp_path, cases, figures)
        # The one write any case may try is the run lease (taken before anything is launched), and only where it
        # is refused: into the namespace that does not exist (404). No Job, no Lease exists afterwards.
        posts = [r for r in kube.requests if r[0] == "POST"]
        assert all(p == "/apis/coordination.k8s.io/v1/namespaces/no-such-ns/leases" for _, p, _ in posts), posts
        from kubernetes import client

        assert client.CoordinationV1Api(kube.api_client()).list_namespaced_lease("default").items == []
        assert kube.jobs() == {}


@pytest.mark.docker
def test_bad_docker_configuration(tmp_path: Path, figures: Figures, docker_engine: Any) -> None:
    names = ["missing-image", "no-image", "malformed-volume", "malformed-env", "engine-unreachable"]
    # every case builds this root in its own directory: its containers would carry that run's id
    run_ids = [make_run_id(unique_id(Fine()), str(tmp_path / name / "resources")) for name in names]

    def containers() -> set[str]:
        return {c.id for rid in run_ids for c in docker_engine.containers.list(
            all=True, sparse=True, filters={"label": [f"{LABEL_MANAGED}=kannon", f"{LABEL_RUN}={rid}"]})}

    before = containers()
    volumes = [arg for v in python_volumes() for arg in ("--volume", v)]
    base = [GOOD, "--backend", "docker", "--docker-python", PY, *volumes]
    cases = [
        Case("missing-image", [*base, "--image", "kannon-no-such-image:never"], "kannon-no-such-image:never"),
        Case("no-image", [GOOD, "--backend", "docker"], "--image"),
        Case("malformed-volume", [*base, "--image", "kannon-test:latest", "--volume", "a:b:c:d"], "a:b:c:d"),
        Case("malformed-env", [*base, "--image", "kannon-test:latest", "--env", "1BAD=x"], "1BAD=x"),
        Case("engine-unreachable", [*base, "--image", "kannon-test:latest"], "DOCKER_HOST",
             {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}),
    ]  # fmt: skip
    run_cases(tmp_path, cases, figures)
    assert [c.name for c in cases] == names
    assert containers() - before == set(), "a container was created"


def test_the_check_itself_catches_a_traceback(tmp_path: Path) -> None:
    """check() must fail a case that crashes: run a target whose module raises at import, expecting exit 2."""
    (tmp_path / "boom.py").write_text("raise RuntimeError('boom at import')\n")
    outcome = run_case(tmp_path, Case("boom", [str(tmp_path / "boom.py") + ":root"], "boom"))
    scratch = Figures()
    problems = check(outcome, scratch)
    assert outcome.code != 0
    assert problems and scratch.bad_inputs_rejected == 0, outcome.stderr
