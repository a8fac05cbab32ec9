"""The hand-off side of code shipping (docs/code-shipping.md, "Wiring"): the archive's location and sha256 travel
inside the hashed spec, specs of runs without shipping are unchanged, and ``storage.exists``."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from kannon import handoff, storage
from tests.support.tasks import Bullet

CODE = {"location": "/ws/kannon/code/" + "a" * 64 + ".tar.gz", "sha256": "a" * 64, "files": 3, "size": 10}


def encode(**kw: object) -> bytes:
    return handoff.Encoder().spec(Bullet(name="x"), "run", {}, ["/somewhere"], **kw)  # type: ignore[arg-type]


def test_a_spec_without_shipped_code_has_no_code_field_and_the_same_bytes() -> None:
    data = encode()
    assert data == encode(code=None, code_root=None)
    # the fields of a spec before shipping existed: re-attach compares spec hashes across kannon versions
    assert set(json.loads(data)) == {"kannon_spec", "target", "run_id", "sys_path", "config", "nodes", "requires"}


def test_shipped_code_is_inside_the_hashed_spec_and_parsed() -> None:
    data = encode(code=CODE)
    doc = handoff.parse_spec(data)
    assert doc["code"] == CODE
    altered = data.replace(b"a" * 64, b"b" * 64)
    with pytest.raises(handoff.SpecError):
        handoff.verify_hash(altered, hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize("bad", [{"location": 1, "sha256": "a" * 64}, "s3://x", {"sha256": "a" * 64}])
def test_a_malformed_code_field_is_a_spec_error(bad: object) -> None:
    doc = json.loads(encode())
    doc["code"] = bad
    with pytest.raises(handoff.SpecError, match="'code' field"):
        handoff.parse_spec(json.dumps(doc).encode())


def test_the_code_root_leaves_the_spec_sys_path(tmp_path: Path) -> None:
    root = tmp_path / "src"
    doc = json.loads(handoff.Encoder().spec(Bullet(name="x"), "run", {}, [str(root), str(root / "sub"),
                                             str(tmp_path / "srcother")], code=CODE, code_root=str(root)))  # fmt: skip
    assert str(root) not in doc["sys_path"] and str(root / "sub") not in doc["sys_path"]
    assert str(tmp_path / "srcother") in doc["sys_path"]


def test_storage_exists_for_files_and_inline_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.bin"
    assert not storage.exists(str(path))
    storage.write_bytes(str(path), b"x")
    assert storage.exists(str(path))
    assert not storage.exists(str(tmp_path))  # a directory is not an object
    monkeypatch.setenv("KANNON_SPEC_TEST", "x")
    assert storage.exists("env:KANNON_SPEC_TEST") and not storage.exists("env:KANNON_SPEC_NOT_SET")
    assert os.environ["KANNON_SPEC_TEST"] == "x"
