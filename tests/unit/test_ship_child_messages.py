"""The child's refusal of a missing or altered archive names the fix that fits how the archive travelled: through
the workspace (the master uploads it again) or in the run's code ConfigMap (nothing is uploaded; the master creates
and mounts the ConfigMap) — docs/code-shipping.md."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kannon import ship_child
from kannon.backends.kubernetes import codemap
from kannon.ship_child import ShipError, fetch_and_activate

SHA = hashlib.sha256(b"the archive").hexdigest()


def test_the_child_looks_for_the_config_map_where_the_backend_mounts_it() -> None:
    job = {"spec": {"template": {"spec": {"containers": [{"name": "main"}]}}}}
    codemap.mount(job, "kannon-x-code-0123", None)
    (mounted,) = job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert mounted["mountPath"] == ship_child.CONFIG_MAP_DIR


def test_a_missing_archive_from_the_workspace_says_the_master_uploads_it_again(tmp_path: Path) -> None:
    with pytest.raises(ShipError) as e:
        fetch_and_activate(str(tmp_path / "ws" / f"{SHA}.tar.gz"), SHA, tmp_path / "cache")
    assert "does not exist" in str(e.value) and "uploads it again" in str(e.value)


def test_a_missing_archive_from_the_config_map_names_the_config_map_not_an_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ship_child, "CONFIG_MAP_DIR", str(tmp_path / "mount"))  # a pod's mount, here
    with pytest.raises(ShipError) as e:
        fetch_and_activate(str(tmp_path / "mount" / f"{SHA}.tar.gz"), SHA, tmp_path / "cache")
    message = str(e.value)
    assert "ConfigMap" in message and "--k8s-code-via configmap" in message, message
    assert "upload" not in message, message


def test_an_altered_archive_from_the_config_map_says_to_delete_the_config_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount = tmp_path / "mount"
    mount.mkdir()
    monkeypatch.setattr(ship_child, "CONFIG_MAP_DIR", str(mount))
    (mount / f"{SHA}.tar.gz").write_bytes(b"another archive")
    with pytest.raises(ShipError) as e:
        fetch_and_activate(str(mount / f"{SHA}.tar.gz"), SHA, tmp_path / "cache")
    message = str(e.value)
    assert "altered or replaced" in message and "Delete that ConfigMap" in message, message
    assert "upload" not in message, message
