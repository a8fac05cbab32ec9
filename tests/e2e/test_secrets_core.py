"""Issue 12, the core's part, on the local backend with real child processes and the real CLI: an inherited
credential and a PRIVATE/HIDDEN bullet parameter reach the child intact and show nowhere else."""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path

import gokart
import pytest

from kannon import speccrypt
from tests.support.procs import kannon as run_kannon
from tests.support.procs import start_kannon, wait_until

PIPE = str(Path(__file__).with_name("secretpipe.py")) + ":root"
CRED = "cred-Zx9-4471-secret"
TOKEN = "tok-Qy7-private-8812"
HIDDEN = "hid-Lm3-hidden-5521"
DB_PASSWORD = "db-Pw5-unneeded-3390"
SECRETS = (CRED, TOKEN, HIDDEN, DB_PASSWORD)


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "master.cfg"  # not luigi.cfg: only the master reads it, children get what the spec carries
    cfg.write_text(f"[secret_db]\npassword={DB_PASSWORD}\n\n[Vault]\nshown=kept-for-vault\n")
    return cfg


def _leaks(paths: list[Path], texts: dict[str, str]) -> list[str]:
    found = []
    for name, text in texts.items():
        found += [f"{s} in {name}" for s in SECRETS if s in text]
    for path in paths:
        data = path.read_bytes()
        found += [f"{s} in {path}" for s in SECRETS if s.encode() in data]
    return found


def _files(*dirs: Path) -> list[Path]:
    return [p for d in dirs if d.exists() for p in d.rglob("*") if p.is_file() and p.suffix != ".pkl"]


def _build(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    out = run_kannon("build", PIPE, "--workspace", "ws", "--config", str(_config(tmp_path)), "--env-to-inherit",
                     "KANNON_TEST_CRED", "--events", "ev.jsonl", "--report", "report.html", *extra, cwd=tmp_path,
                     env={"KANNON_TEST_CRED": CRED, "KANNON_TEST_EVIDENCE": str(tmp_path / "evidence"),
                          **(env or {})})  # fmt: skip
    return out.returncode, out.stdout + out.stderr


def test_a_credential_and_a_private_parameter_reach_the_child_intact_and_leak_nowhere(tmp_path: Path) -> None:
    code, console = _build(tmp_path)
    assert code == 0, console
    (result,) = (tmp_path / "ws" / "secretpipe").glob("Vault_*.pkl")
    got = gokart.target.make_target(str(result)).load()
    assert got["cred"] == hashlib.sha256(CRED.encode()).hexdigest(), "the inherited credential reached the child"
    assert got["token"] == hashlib.sha256(TOKEN.encode()).hexdigest(), "the PRIVATE parameter reached the child"
    assert got["hidden"] == hashlib.sha256(HIDDEN.encode()).hexdigest(), "the HIDDEN parameter reached the child"
    copies = _files(tmp_path / "evidence")
    specs = [p for p in copies if p.name.startswith("spec-")]
    assert specs, "the child saw its spec file"
    (key_file,) = (tmp_path / "ws" / "kannon" / "runs").glob(f"*/{speccrypt.KEY_FILE}")
    for spec in specs:  # opened with the run's key, as a child does
        config = json.loads(speccrypt.open_sealed(spec.read_bytes(), key_file.read_text()))["config"]
        assert "secret_db" not in config, "a config section no task needs stays out of the spec"
        assert config["Vault"]["shown"] == "kept-for-vault", "the section named after the task's family travels"
    report, event_log = (tmp_path / "report.html").read_text(), (tmp_path / "ev.jsonl").read_text()
    assert "visible-value" in event_log and "visible-value" in report, "public parameters are still shown"
    leaks = _leaks(copies + _files(tmp_path / "ws", tmp_path / ".kannon"),
                   {"console": console, "event log": event_log, "report": report})  # fmt: skip
    assert not leaks, leaks
    assert not _spec_leftovers(tmp_path), "the run deleted its spec files"


def _spec_leftovers(tmp_path: Path) -> list[Path]:
    runs = tmp_path / "ws" / "kannon"
    return [p for p in runs.rglob("*") if p.is_file() and ("specs" in p.parts or p.name == "specs.written")]


@pytest.mark.parametrize("ending", ["success", "failure"])
def test_every_spec_file_is_deleted_when_the_run_ends(tmp_path: Path, ending: str) -> None:
    code, console = _build(tmp_path, env={"KANNON_TEST_FLAGS": "fail"} if ending == "failure" else {})
    assert (code == 0) == (ending == "success"), console
    assert [p for p in _files(tmp_path / "evidence") if p.name.startswith("spec-")], "a spec file was written"
    assert not _spec_leftovers(tmp_path)


def test_every_spec_file_is_deleted_when_the_master_gets_sigterm(tmp_path: Path) -> None:
    master = start_kannon("build", PIPE, "--workspace", "ws", "--config", str(_config(tmp_path)), "--env-to-inherit",
                          "KANNON_TEST_CRED", cwd=tmp_path,
                          env={"KANNON_TEST_CRED": CRED, "KANNON_TEST_EVIDENCE": str(tmp_path / "evidence"),
                               "KANNON_TEST_FLAGS": "wait"})  # fmt: skip
    try:
        wait_until(lambda: (tmp_path / "evidence" / "waiting").exists(), timeout=120, what="the bullet to start")
        assert _spec_leftovers(tmp_path), "while the bullet runs its spec exists"
        master.send_signal(signal.SIGTERM)
        console, _ = master.communicate(timeout=120)
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
    assert master.returncode != 0, console
    assert not _spec_leftovers(tmp_path), console
    assert not _leaks([], {"console": console}), console


def test_a_crashed_masters_spec_files_are_swept_by_the_next_run(tmp_path: Path) -> None:
    env = {"KANNON_TEST_CRED": CRED, "KANNON_TEST_EVIDENCE": str(tmp_path / "evidence")}
    master = start_kannon("build", PIPE, "--workspace", "ws", cwd=tmp_path, env={**env, "KANNON_TEST_FLAGS": "wait"})
    try:
        wait_until(lambda: (tmp_path / "evidence" / "waiting").exists(), timeout=120, what="the bullet to start")
        master.kill()  # SIGKILL: no cleanup of its own (its children die with it)
        master.communicate(timeout=120)
    finally:
        if master.poll() is None:
            master.kill()
    leftovers = _spec_leftovers(tmp_path)
    assert leftovers, "the crash left its spec files"
    (tmp_path / "evidence" / "release").touch()
    code, console = _build(tmp_path)
    assert code == 0, console
    assert not _spec_leftovers(tmp_path), console


@pytest.mark.parametrize("ending", ["success", "failure"])
def test_a_credential_the_task_prints_is_masked_in_console_events_and_report(tmp_path: Path, ending: str) -> None:
    code, console = _build(tmp_path, "--follow-logs", "--env-to-inherit", "KANNON_TEST_SHORT",
                           env={"KANNON_TEST_SHORT": "abc",
                                "KANNON_TEST_FLAGS": "print,fail" if ending == "failure" else "print"})  # fmt: skip
    assert (code == 0) == (ending == "success"), console
    report, event_log = (tmp_path / "report.html").read_text(), (tmp_path / "ev.jsonl").read_text()
    assert "connecting with ***" in console, "the live line is shown, masked"
    if ending == "failure":
        assert "connected with ***" in console and "connected with ***" in event_log, "the tail and reason, masked"
    assert "env KANNON_TEST_SHORT is too short to mask in logs" in console
    assert console.count("too short to mask") == 1, console
    leaks = _leaks([], {"console": console, "event log": event_log, "report": report})
    assert not leaks, leaks
