"""Spec sealing (kannon.speccrypt) and the child's refusal of a sealed spec it cannot open (a real child process)."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kannon import exitcodes, handoff, speccrypt
from tests.support.tasks import Bullet

REPO = Path(__file__).resolve().parents[2]


def test_the_run_key_is_drawn_once_per_run_directory_and_readable_only_by_its_owner(tmp_path: Path) -> None:
    first = speccrypt.run_key(tmp_path / "run")
    assert speccrypt.run_key(tmp_path / "run") == first  # a re-attaching master seals with the same key
    assert speccrypt.run_key(tmp_path / "other") != first
    assert stat.S_IMODE(os.stat(tmp_path / "run" / speccrypt.KEY_FILE).st_mode) == 0o600


def test_a_sealed_spec_shows_nothing_and_opens_only_with_its_key() -> None:
    key = speccrypt.new_key()
    plain = b'{"password": "hunter2-private"}'
    sealed = speccrypt.seal(plain, key)
    assert b"hunter2" not in sealed and sealed != speccrypt.seal(plain, key)  # a fresh nonce every time
    assert speccrypt.open_sealed(sealed, key) == plain
    with pytest.raises(speccrypt.SpecKeyError, match="not set"):
        speccrypt.open_sealed(sealed, None)
    with pytest.raises(speccrypt.SpecKeyError, match="does not verify"):
        speccrypt.open_sealed(sealed, speccrypt.new_key())
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(speccrypt.SpecKeyError, match="does not verify"):
        speccrypt.open_sealed(flipped, key)


def _child(spec: Path, uid: str, sha: str, key: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != speccrypt.KEY_ENV}
    env["PYTHONPATH"] = str(REPO)
    if key is not None:
        env[speccrypt.KEY_ENV] = key
    return subprocess.run([sys.executable, "-m", "kannon", *handoff.child_args(str(spec), uid, sha)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_the_child_refuses_a_sealed_spec_without_its_key_with_exit_9(tmp_path: Path) -> None:
    task = Bullet(name="sealed", workspace_directory=str(tmp_path / "ws"))
    data = handoff.Encoder().spec(task, "run", {})
    key = speccrypt.new_key()
    spec = tmp_path / "spec.json"
    spec.write_bytes(speccrypt.seal(data, key))
    uid, sha = handoff.unique_id(task), hashlib.sha256(data).hexdigest()

    missing = _child(spec, uid, sha, None)
    assert missing.returncode == exitcodes.SPEC_KEY, missing.stderr[-2000:]
    assert "KANNON_SPEC_KEY is not set" in exitcodes.describe(missing.returncode, missing.stderr.splitlines())
    wrong = _child(spec, uid, sha, speccrypt.new_key())
    assert wrong.returncode == exitcodes.SPEC_KEY, wrong.stderr[-2000:]
    assert "does not verify" in exitcodes.describe(wrong.returncode, wrong.stderr.splitlines())
    ok = _child(spec, uid, sha, key)
    assert ok.returncode == exitcodes.OK, ok.stderr[-2000:]
    assert task.output().exists()


def test_a_process_that_imported_the_child_entry_point_opens_a_sealed_spec_without_importing_anything() -> None:
    """The fork server, and a warm pod image, import ``kannon.child`` once and fork a child per bullet from it: what
    a child still imports after the fork it pays on every bullet. Opening its sealed spec imported ``cryptography``
    (~10 ms of a ~35 ms no-op child on the local fork server, measured with py-spy)."""
    key = speccrypt.new_key()
    sealed = speccrypt.seal(b'{"target": "x"}', key)
    code = ("import sys, kannon.child\n"
            "before = set(sys.modules)\n"
            "from kannon import speccrypt\n"
            f"assert speccrypt.open_sealed(bytes.fromhex({sealed.hex()!r}), {key!r}) == b'{{\"target\": \"x\"}}'\n"
            "print(sorted(set(sys.modules) - before))\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_master_drawing_the_key_never_shows_another_an_empty_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two masters of one run started at the same moment: the one that creates spec.key must not let the other
    read it before the key is in it (CI: the second master died with "KANNON_SPEC_KEY must hold 32 bytes, not 0"
    and a traceback instead of waiting its turn for the lease). The first is held just after drawing its key."""
    import threading

    drawn, go = threading.Event(), threading.Event()
    real = speccrypt.new_key
    held: list[str] = []

    def slow_new_key() -> str:
        key = real()
        if threading.current_thread().name == "first":
            drawn.set()
            assert go.wait(60)
        return key

    monkeypatch.setattr(speccrypt, "new_key", slow_new_key)
    first = threading.Thread(target=lambda: held.append(speccrypt.run_key(tmp_path / "run")), name="first")
    first.start()
    try:
        assert drawn.wait(60)
        second = speccrypt.run_key(tmp_path / "run")
    finally:
        go.set()
        first.join(60)
    assert held == [second]  # both seal with the one key in the file
    assert (tmp_path / "run" / speccrypt.KEY_FILE).read_text() == second
    assert [p.name for p in (tmp_path / "run").iterdir()] == [speccrypt.KEY_FILE]  # no temporary file left


def test_a_damaged_key_file_is_named_with_its_fix(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / speccrypt.KEY_FILE).write_text("")
    with pytest.raises(speccrypt.SpecKeyError) as e:
        speccrypt.run_key(tmp_path / "run")
    assert str(tmp_path / "run" / speccrypt.KEY_FILE) in str(e.value) and "delete it" in str(e.value)
