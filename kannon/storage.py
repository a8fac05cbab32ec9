"""Read and write small blobs (hand-off specs) at a location: a local path, s3://, gs://, or env:NAME (inline).

Object stores use their standard credential chains (for S3, boto3's: env vars, profile, IAM role, and
``AWS_ENDPOINT_URL`` for S3-compatible servers), because the child must read its spec before any luigi config is
loaded.
"""

from __future__ import annotations

import base64
import os
import posixpath
import tempfile
import zlib
from pathlib import Path
from typing import Any

INLINE_PREFIX = "env:"


def is_remote(location: str) -> bool:
    return location.startswith(("s3://", "gs://"))


def join(base: str, *parts: str) -> str:
    if is_remote(base):
        return posixpath.join(base, *parts)
    return str(Path(base, *parts).absolute())


def encode_inline(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data, 9)).decode("ascii")


def decode_inline(text: str) -> bytes:
    return zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))


def _split(location: str) -> tuple[str, str]:
    bucket, _, key = location.split("://", 1)[1].partition("/")
    if not bucket or not key:
        raise ValueError(f"{location!r} is not a bucket/key location")
    return bucket, key


def _s3() -> Any:
    import boto3  # only needed for s3:// workspaces (gokart's own s3 extra)

    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)


def _gcs_bucket(bucket: str) -> Any:
    try:
        from google.cloud import storage  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError as e:
        raise RuntimeError("gs:// hand-off needs the google-cloud-storage package in master and child") from e
    return storage.Client().bucket(bucket)


def _missing(e: Exception) -> bool:
    """An object store's "no such object" (boto3's NoSuchKey/404, google-cloud's NotFound): the same
    FileNotFoundError as a local path, instead of each client's own exception and wording."""
    response = getattr(e, "response", None)  # botocore: a dict; google-cloud: an HTTP response object
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in ("NoSuchKey", "404") or type(e).__name__ in ("NotFound", "NoSuchKey")


def write_bytes(location: str, data: bytes) -> None:
    if location.startswith("s3://"):
        bucket, key = _split(location)
        _s3().put_object(Bucket=bucket, Key=key, Body=data)
    elif location.startswith("gs://"):
        bucket, key = _split(location)
        _gcs_bucket(bucket).blob(key).upload_from_string(data)
    else:
        path = Path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        # write-then-rename: a reader never sees a half-written spec
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def read_bytes(location: str, max_bytes: int = 256 * 1024 * 1024) -> bytes:
    if location.startswith(INLINE_PREFIX):
        name = location[len(INLINE_PREFIX) :]
        text = os.environ.get(name)
        if text is None:
            raise FileNotFoundError(f"inline spec variable {name} is not set")
        return decode_inline(text)
    if location.startswith("s3://"):
        bucket, key = _split(location)
        try:
            body = _s3().get_object(Bucket=bucket, Key=key)["Body"]
        except Exception as e:
            if _missing(e):
                raise FileNotFoundError(f"{location} does not exist") from e
            raise
        data: bytes = body.read(max_bytes + 1)
    elif location.startswith("gs://"):
        bucket, key = _split(location)
        try:
            data = _gcs_bucket(bucket).blob(key).download_as_bytes()
        except Exception as e:
            if _missing(e):
                raise FileNotFoundError(f"{location} does not exist") from e
            raise
    else:
        with open(location, "rb") as f:
            data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{location} is larger than {max_bytes} bytes")
    return data


def exists(location: str) -> bool:
    """Whether an object (or local file) is at ``location``; an object store's 404 is False, other errors raise."""
    try:
        if location.startswith("s3://"):
            bucket, key = _split(location)
            _s3().head_object(Bucket=bucket, Key=key)
            return True
        if location.startswith("gs://"):
            bucket, key = _split(location)
            return bool(_gcs_bucket(bucket).blob(key).exists())
        if location.startswith(INLINE_PREFIX):
            return location[len(INLINE_PREFIX) :] in os.environ
        return Path(location).is_file()
    except Exception as e:
        response = getattr(e, "response", None)  # head_object's 404 carries no NoSuchKey code
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(response, dict) else None
        if _missing(e) or status == 404:
            return False
        raise


def delete(location: str) -> None:
    try:
        if location.startswith("s3://"):
            bucket, key = _split(location)
            _s3().delete_object(Bucket=bucket, Key=key)
        elif location.startswith("gs://"):
            bucket, key = _split(location)
            _gcs_bucket(bucket).blob(key).delete()
        elif not location.startswith(INLINE_PREFIX):
            Path(location).unlink(missing_ok=True)
    except Exception:  # noqa: S110 - best-effort cleanup of our own temporary files
        pass
