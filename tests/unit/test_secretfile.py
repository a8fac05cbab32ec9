"""kannon.secretfile (the Docker backend's way of handing the run's secrets to a child) and who may own the file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kannon import exitcodes, secretfile
from kannon.backends.docker import secrets_owner


def test_the_file_is_created_owner_only_replacing_a_leftover(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text("leftover")
    path.chmod(0o644)
    uid = 12345 if os.geteuid() == 0 else None
    secretfile.write(str(path), {"A": "1"}, uid=uid)
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == (uid if uid is not None else os.getuid())
    assert json.loads(path.read_text()) == {"A": "1"}


def test_load_moves_the_values_into_the_environment_and_drops_the_pointer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.json"
    secretfile.write(str(path), {"KANNON_TEST_A": "from-file"})
    monkeypatch.setenv("KANNON_TEST_A", "from-the-executor")  # a lower layer: the file's value replaces it
    monkeypatch.setenv(secretfile.ENV_VAR, str(path))
    secretfile.load()
    assert os.environ["KANNON_TEST_A"] == "from-file"
    assert secretfile.ENV_VAR not in os.environ


def test_an_unreadable_file_is_one_line_without_its_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"A": "half-a-secr')
    monkeypatch.setenv(secretfile.ENV_VAR, str(path))
    with pytest.raises(secretfile.SecretFileError) as e:
        secretfile.load()
    assert "half-a-secr" not in str(e.value) and str(path) in str(e.value)


def test_the_child_exits_bad_spec_naming_the_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    env = {**os.environ, secretfile.ENV_VAR: str(missing)}
    proc = subprocess.run([sys.executable, "-m", "kannon", "run-task", "--spec", str(tmp_path / "spec.json"),
                           "--task-id", "x", "--sha256", "0" * 64], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == exitcodes.BAD_SPEC
    assert f"{exitcodes.REASON_PREFIX}cannot read the secrets file {missing}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_who_can_be_given_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    assert secrets_owner("root") is None and secrets_owner("0:0") is None  # root reads anything
    assert secrets_owner(f"{os.getuid()}:{os.getgid()}") is None  # the master's own file fits
    with pytest.raises(ValueError, match="UID:GID"):
        secrets_owner("nobody")
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ValueError, match="only root"):
        secrets_owner("12345:12345")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert secrets_owner("12345:12345") == 12345
