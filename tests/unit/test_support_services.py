"""tests/support/services.py: a missing service skips a test, except under CI=true where it fails it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.services import DOCKER_SETUP, docker_engine, service_unavailable


@pytest.mark.parametrize("ci", [None, "false", "1"])
def test_skips_unless_ci_is_true(ci: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception) as info:
        service_unavailable("no engine")
    assert info.value.msg == f"no engine; {DOCKER_SETUP}"


def test_fails_without_a_traceback_when_ci_is_true(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception) as info:
        service_unavailable("no browser", "install chromium")
    assert info.value.msg == "no browser — and CI=true, so this is a failure, not a skip; install chromium"
    assert info.value.pytrace is False


def test_an_unreachable_docker_engine_skips(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    with pytest.raises(pytest.skip.Exception) as info:
        docker_engine()
    assert info.value.msg.startswith("no Docker engine reachable (") and info.value.msg.endswith(DOCKER_SETUP)
