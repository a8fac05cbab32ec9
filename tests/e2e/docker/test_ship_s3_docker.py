"""``kannon build --ship-code`` with an ``s3://`` workspace (moto in server mode), on Docker: the archive is uploaded
to the bucket once per content and every container fetches it from there (docs/code-shipping.md).

The containers share the host's network (``--docker-network host``) to reach the moto server on 127.0.0.1, and get
the AWS variables with ``--env-to-inherit``. They mount the interpreter, venv and kannon checkout, never the project's
code (tests/support/shipcode.py): a control run without the flag fails. An object replaced in the bucket is refused
by the child. Versioning is on in the bucket, so every PUT of an object leaves a version: "a rerun with unchanged
code uploads nothing" is asserted on the bucket's versions, not on timing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.docker.support import python_volumes
from tests.support.shipcode import PY, Project

pytestmark = pytest.mark.docker

BUCKET = "kannon-ship-e2e"
AWS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")

# The shared project's pipeline with its final output in the workspace (a text target in the bucket), not a local
# file next to it.
PIPELINE = '''
import os

import luigi

import kannon
from shipwired.sub import words


class ShipA(kannon.TaskOnBullet[str]):
    rev = luigi.IntParameter()

    def run(self):
        self.dump(words.greeting())


class ShipB(kannon.TaskOnBullet[str]):
    rev = luigi.IntParameter()

    def requires(self):
        return ShipA(rev=self.rev)

    def output(self):
        return self.make_target(f"out-{self.rev}.txt", use_unique_id=False)

    def run(self):
        self.dump(self.load() + "!")


def root():
    return ShipB(rev=int(os.environ["SHIP_REV"]))
'''


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A versioned bucket on a local moto server; the AWS variables point boto3 (master and children) at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    try:
        yield s3
    finally:
        server.stop()


def code_versions(s3: Any) -> list[tuple[str, str]]:
    """Every version ever PUT under the workspace's code prefix: (key, version id)."""
    listing = s3.list_object_versions(Bucket=BUCKET, Prefix="ws/kannon/code/")
    return sorted((v["Key"], v["VersionId"]) for v in listing.get("Versions", []))


def test_an_s3_workspace_carries_the_shipped_code_to_the_containers_and_uploads_it_once(
    engine: Any, image: str, s3: Any, tmp_path: Path
) -> None:
    project = Project(tmp_path)
    (project.src / "shipwired" / "pipeline.py").write_text(PIPELINE)
    volumes = [a for v in python_volumes() for a in ("--volume", v)]
    assert not any(str(project.src) in v for v in volumes)
    inherit = [a for name in AWS for a in ("--env-to-inherit", name)]

    def run(rev: int, *extra: str) -> Any:
        return project.build(rev, "--workspace", f"s3://{BUCKET}/ws", "--backend", "docker", "--image", image,
                             "--docker-python", PY, "--docker-network", "host", *volumes, *inherit, *extra)  # fmt: skip

    def output(rev: int) -> str:
        return str(s3.get_object(Bucket=BUCKET, Key=f"ws/out-{rev}.txt")["Body"].read().decode())

    # Control: the container really lacks the code (found by the image probe at plan time, or by the child).
    control = run(1)
    assert control.returncode in (1, 2) and "--ship-code" in control.stdout, control.stdout
    assert "shipwired" in control.stdout, control.stdout
    assert code_versions(s3) == []

    first = run(1, "--ship-code")
    assert first.returncode == 0, first.stdout
    assert output(1) == "hello v1!"
    ((key, version),) = code_versions(s3)
    sha = key.removeprefix("ws/kannon/code/").removesuffix(".tar.gz")
    assert f"at s3://{BUCKET}/{key}" in first.stdout and f"sha256 {sha[:12]}" in first.stdout, first.stdout

    # Unchanged code, another task: it runs from the same object, and nothing is PUT again.
    second = run(2, "--ship-code")
    assert second.returncode == 0, second.stdout
    assert output(2) == "hello v1!"
    assert code_versions(s3) == [(key, version)]

    # An edit: one new object, and the containers run the edited code from it.
    project.set_greeting("hello v2")
    third = run(3, "--ship-code")
    assert third.returncode == 0, third.stdout
    assert output(3) == "hello v2!"
    versions = code_versions(s3)
    assert len(versions) == 2 and (key, version) in versions

    # The child verifies what it fetched: the v2 object replaced in the bucket (by v1's bytes) is refused, exit 3.
    (key2,) = {k for k, _ in versions} - {key}
    old = s3.get_object(Bucket=BUCKET, Key=key, VersionId=version)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=key2, Body=old)
    tampered = run(4, "--ship-code")
    assert tampered.returncode == 1 and "exit code 3" in tampered.stdout, tampered.stdout
    assert "altered or replaced" in tampered.stdout, tampered.stdout
