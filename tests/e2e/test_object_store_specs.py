"""Hand-off specs in object stores: gs:// through the real google-cloud-storage client against a local GCS emulator
server, and the "no such object" of both gs:// and s3:// as FileNotFoundError.

A workspace in Google Cloud Storage puts the specs under ``gs://bucket/.../kannon/specs/``; the master writes them
with kannon.storage and the child (``python -m kannon run-task --spec gs://...``) reads them. The emulator
(gcp-storage-emulator) speaks the JSON API the client uses; ``STORAGE_EMULATOR_HOST`` points the client at it, as
Google documents for its own emulators.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kannon import handoff, storage
from tests.support.tasks import Bullet

REPO = Path(__file__).resolve().parents[2]
BUCKET = "kannon-gcs"


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    with socket.socket() as s:  # the emulator takes a port number, not an already bound socket
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    try:
        yield f"gs://{BUCKET}/ws"
    finally:
        server.stop()


def test_storage_round_trip_and_missing_objects(gcs: str) -> None:
    location = f"{gcs}/kannon/specs/run/abc.json"
    storage.write_bytes(location, b'{"kannon_spec": 1}')
    assert storage.read_bytes(location) == b'{"kannon_spec": 1}'
    with pytest.raises(ValueError, match="larger than 4 bytes"):
        storage.read_bytes(location, max_bytes=4)
    storage.delete(location)
    with pytest.raises(FileNotFoundError, match="gs://kannon-gcs/ws/kannon/specs/run/abc.json does not exist"):
        storage.read_bytes(location)
    storage.delete(location)  # deleting what is gone is not an error (best-effort cleanup)


def test_child_runs_a_task_from_a_gs_spec(gcs: str, tmp_path: Path) -> None:
    task = Bullet(name="from-gcs")  # outputs in the local workspace; only the spec travels through GCS
    data = handoff.Encoder().spec(task, "gcsrun", handoff.luigi_config_snapshot(), [str(REPO)])
    uid = task.make_unique_id()
    location = f"{gcs}/kannon/specs/gcsrun/{uid}.json"
    storage.write_bytes(location, data)
    argv = [sys.executable, "-m", "kannon", *handoff.child_args(location, uid, hashlib.sha256(data).hexdigest())]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "resources").exists()
    # a spec altered in the bucket is refused before anything runs (exit 3: bad hand-off)
    storage.write_bytes(location, data.replace(b"from-gcs", b"from-gcx"))
    bad = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 3, bad.stdout + bad.stderr
    assert "sha256" in bad.stdout + bad.stderr


def test_s3_missing_object_is_file_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import mock_aws

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        import boto3

        boto3.client("s3").create_bucket(Bucket="kannon-s3")
        storage.write_bytes("s3://kannon-s3/ws/spec.json", b"{}")
        assert storage.read_bytes("s3://kannon-s3/ws/spec.json") == b"{}"
        with pytest.raises(FileNotFoundError, match="s3://kannon-s3/ws/other.json does not exist"):
            storage.read_bytes("s3://kannon-s3/ws/other.json")
        with pytest.raises(Exception, match="NoSuchBucket"):  # not a missing object: the client's own error
            storage.read_bytes("s3://kannon-no-bucket/ws/spec.json")
