"""tests/support/services.py: a missing service skips a test, except under CI=true where it fails it."""

from __future__ import annotations

import pytest

from tests.support.services import DOCKER_SETUP, service_unavailable


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
