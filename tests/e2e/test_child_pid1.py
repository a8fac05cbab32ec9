"""The child entrypoint as PID 1 of a container: a SIGTERM that comes while ``python -m kannon run-task`` is still
importing must end it too.

The kernel drops a signal PID 1 has no handler for (pid_namespaces(7)), and ``child.main`` installs its handler only
after kannon, luigi and gokart are imported (a second or more in a pod). So ``import kannon`` itself installs a
minimal one when it is PID 1 running ``run-task``. The process below is PID 1 of its own PID namespace (as the
emulator's pods are: kannon/forkserver/server.py --pid1) and sends itself SIGTERM right after ``import kannon``,
before anything of the child runs: with the early handler it ends with 143 at once; without it the signal is
dropped and it goes on.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kannon.forkserver import server

if os.geteuid() != 0 and not os.environ.get("CI"):
    pytest.skip("PID namespaces need root (CI runs as root, where this never skips)", allow_module_level=True)

SCRIPT = """
import os, signal, sys, time
assert os.getpid() == 1, os.getpid()
sys.argv[1:] = {argv!r}
import kannon
os.kill(1, signal.SIGTERM)
time.sleep(3)
print("survived")
"""


def _as_pid1(argv: list[str]) -> subprocess.CompletedProcess[str]:
    code = SCRIPT.format(argv=argv)
    return subprocess.run([sys.executable, "-I", "-S", server.__file__, "--pid1", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=120, env={**os.environ})  # fmt: skip


def test_a_sigterm_while_the_child_entrypoint_imports_ends_pid_1() -> None:
    out = _as_pid1(["run-task"])
    assert out.returncode == 143 and "survived" not in out.stdout, (out.returncode, out.stdout, out.stderr)


def test_other_commands_keep_the_default_action_and_pid_1_drops_the_signal() -> None:
    """The control: the namespace really gives init semantics (else the test above would prove nothing)."""
    out = _as_pid1(["build"])
    assert out.returncode == 0 and "survived" in out.stdout, (out.returncode, out.stdout, out.stderr)
