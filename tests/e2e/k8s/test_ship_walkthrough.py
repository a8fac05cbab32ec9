"""The ``--ship-code`` walkthrough (docs/kubernetes.md, "Iterate on the code without rebuilding the image", and
examples/k8s/README.md) says what a user can really run: every ``kannon`` command in it parses with kannon's own
argparse parser, its ``kannon plan`` runs and says what it would ship, the files it names exist, the image it builds
carries no pipeline code, and its Job template is one the API server accepts."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from kannon import cli
from kannon.testing import KubeEmulator
from tests.e2e.k8s.test_k8s_backend import launch_of

REPO = Path(__file__).resolve().parents[3]
SECTION = "### Iterate on the code without rebuilding the image (`--ship-code`)"


def walkthrough() -> str:
    text = (REPO / "docs" / "kubernetes.md").read_text()
    assert SECTION in text
    return text.split(SECTION, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]


def readme_ship_block() -> str:
    text = (REPO / "examples" / "k8s" / "README.md").read_text()
    return text.split("--ship-code` (docs/kubernetes.md", 1)[1].split("These manifests", 1)[0]


def shell_commands(text: str) -> list[list[str]]:
    """The ``$ ...`` lines of the console blocks, continuation lines joined, as argv lists."""
    blocks = re.findall(r"```console\n(.*?)```", text, flags=re.S)
    assert blocks
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line[2:], comments=True) for line in lines if line.startswith("$ ")]


def kannon_commands(text: str) -> list[list[str]]:
    return [argv[1:] for argv in shell_commands(text) if argv[0] == "kannon"]


@pytest.mark.parametrize("where", ["docs", "readme"])
def test_every_documented_kannon_command_parses_with_the_real_parser(where: str) -> None:
    text = walkthrough() if where == "docs" else readme_ship_block()
    argvs = kannon_commands(text)
    assert any(a[0] == "build" for a in argvs)
    for argv in argvs:
        ns = cli.make_parser().parse_args(argv)  # an unknown option or bad value exits (argparse): the test fails
        assert ns.ship_code and ns.backend == "kubernetes", argv
        assert (REPO / ns.target.split(":")[0]).is_file(), argv
        assert (REPO / ns.k8s_job_template).is_file(), argv
        if ns.command == "build":
            assert ns.workspace.startswith("s3://"), argv  # the laptop and the pods must both reach it
            assert set(ns.env_to_inherit) >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, argv
            # the pods get the credentials from the run's Secret; a bucket region too, or boto3 cannot sign
            assert "AWS_DEFAULT_REGION" in ns.env_to_inherit, argv


def test_the_image_it_builds_has_the_dependencies_and_no_code_and_the_template_uses_it() -> None:
    argvs = shell_commands(walkthrough())
    (build,) = [a for a in argvs if a[:2] == ["docker", "build"]]
    dockerfile = REPO / build[build.index("-f") + 1]
    tag = build[build.index("-t") + 1]
    assert [a[-1] for a in argvs if a[:3] == ["kind", "load", "docker-image"]] == [tag]
    instructions = [line.split()[0] for line in dockerfile.read_text().splitlines() if line and line[0] != "#"]
    assert "COPY" not in instructions and "ADD" not in instructions  # the code comes with each run, not the image
    assert "pip install --no-cache-dir kannon boto3" in dockerfile.read_text()
    template = yaml.safe_load((REPO / "examples" / "k8s" / "child-job-template-ship.yaml").read_text())
    spec = template["spec"]["template"]["spec"]
    assert [c["image"] for c in spec["containers"]] == [tag]
    assert "volumes" not in spec  # no PVC: the workspace is the bucket


def test_the_documented_plan_runs_and_says_what_it_would_ship(kube: KubeEmulator, tmp_path: Path) -> None:
    (plan,) = [a for a in kannon_commands(walkthrough()) if a[0] == "plan"]
    env = {**os.environ, "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
           "PYTHONPATH": str(REPO)}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "kannon", *plan], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "TaskG" in done.stdout
    assert re.search(r"kannon: would ship code: 1 files, .* sha256 [0-9a-f]{12} from .*examples/quickstart",
                     done.stderr), done.stderr  # fmt: skip


def test_the_template_makes_jobs_the_api_server_accepts(kube: KubeEmulator, tmp_path: Path) -> None:
    from kannon.backends.kubernetes import build_job, load_template

    job = build_job(load_template(REPO / "examples" / "k8s" / "child-job-template-ship.yaml"),
                    launch_of(tmp_path, 1, "x"), name="kannon-ship-example-1", namespace="kannon-demo")  # fmt: skip
    client.BatchV1Api(kube.api_client()).create_namespaced_job("kannon-demo", job, dry_run="All")
    assert kube.jobs("kannon-demo") == {}
