"""kannon's fork server (kannon.forkserver) on its own, as both its users start it: a fresh interpreter run by
path (the emulator's warm pods) and forked from the caller (the local backend). Real processes and signals: what
a started process sees, how its end is reported, that signals reach it, and that nothing outlives the server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kannon.forkserver.client import ForkServer
from tests.support.procs import gone, wait_until

PY = sys.executable
MARKER = "wave"  # a stdlib module nothing here imports: the server imports it, so a child can tell it is warm


class Session:
    """A server and the messages it sent so far (read on the test's thread)."""

    def __init__(self, server: ForkServer, tmp: Path) -> None:
        self.server, self.tmp = server, tmp
        self.seen: list[dict[str, Any]] = []
        self.next_id = 0

    def next(self, pred: Any, timeout: float = 60) -> dict[str, Any]:
        for msg in self.seen:
            if pred(msg):
                self.seen.remove(msg)
                return msg
        self.server.sock.settimeout(timeout)
        try:
            while True:
                msg = self.server.recv()
                assert msg is not None, "the fork server went away"
                if pred(msg):
                    return msg
                self.seen.append(msg)
        finally:
            self.server.sock.settimeout(None)

    def send(self, mode: str, target: str, *args: str, **extra: Any) -> tuple[int, Path]:
        """Ask for a process whose output goes to a file; (request id, output file)."""
        self.next_id += 1
        out = self.tmp / f"out-{self.next_id}.txt"
        fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o644)
        req = {"op": "run", "id": self.next_id, "mode": mode, "target": target, "args": list(args),
               "env": {"PATH": os.environ["PATH"], **extra.pop("env", {})}, "cwd": str(self.tmp), **extra}  # fmt: skip
        try:
            self.server.send(req, fd)
        finally:
            os.close(fd)
        return self.next_id, out

    def started(self, rid: int) -> int:
        started = self.next(lambda m: m.get("started") == rid or m.get("failed") == rid)
        assert "pid" in started, started
        return int(started["pid"])

    def run(self, mode: str, target: str, *args: str, **extra: Any) -> tuple[int, int, Path]:
        """Start a process whose output goes to a file; (request id, pid, output file)."""
        rid, out = self.send(mode, target, *args, **extra)
        return rid, self.started(rid), out

    def exit_code(self, rid: int) -> int:
        return int(self.next(lambda m: m.get("exited") == rid)["code"])


@pytest.fixture(params=["spawned", "forked"])
def session(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Session]:
    if request.param == "spawned":
        server = ForkServer.spawn(PY, [MARKER, "no_such_module_here"], {"PATH": os.environ["PATH"]}, str(tmp_path))
        hello = server.hello(timeout=60)
        assert hello["loaded"] == [MARKER] and hello["failed"][0].startswith("no_such_module_here: ModuleNotFound")
    else:
        server = ForkServer.start()  # forked from this process (a fresh interpreter if pytest runs other threads)
        assert "ready" in server.hello(timeout=60)
        server.send({"op": "import", "modules": [MARKER], "spares": 2})
    s = Session(server, tmp_path)
    if request.param == "forked":
        assert s.next(lambda m: "imported" in m)["imported"] == [MARKER]
    try:
        yield s
    finally:
        server.close()


def test_a_process_sees_its_own_argv_env_cwd_and_the_warm_modules(session: Session) -> None:
    code = "import json, os, sys; print(json.dumps([sys.argv, os.environ.get('FOO'), os.getcwd(), 'wave' in sys.modules, os.environ.get('T0') is not None]))"  # noqa: E501
    rid, pid, out = session.run("c", code, "a1", env={"FOO": "bar"}, started_env="T0")
    assert session.exit_code(rid) == 0
    assert json.loads(out.read_text()) == [["-c", "a1"], "bar", str(session.tmp), True, True]
    assert pid != os.getpid() and gone(pid)


@pytest.mark.parametrize(
    ("code", "expected"),
    [("import sys; sys.exit(3)", 3), ("raise RuntimeError('boom')", 1), ("import os; os._exit(42)", 42),
     ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", -signal.SIGKILL), ("pass", 0)],
)  # fmt: skip
def test_exit_codes_are_reported_as_the_kernel_reports_them(session: Session, code: str, expected: int) -> None:
    rid, _pid, out = session.run("c", code)
    assert session.exit_code(rid) == expected
    if expected == 1:
        assert "RuntimeError: boom" in out.read_text()


def called(args: list[str]) -> int:
    """What mode "call" runs below, in a process forked from a server forked from this test process."""
    print("called with", args, flush=True)
    return 5


def test_a_call_reports_its_code_before_it_exits(session: Session) -> None:
    if session.server.proc is not None:
        pytest.skip("mode 'call' imports from the server's own sys.path: only a server forked from here has tests")
    rid, _pid, out = session.run("call", f"{__name__}:called", "x", "y", report=True)
    assert int(session.next(lambda m: m.get("reported") == rid)["code"]) == 5
    assert session.exit_code(rid) == 5
    assert out.read_text() == "called with ['x', 'y']\n"


def test_a_signal_to_the_process_group_reaches_the_process(session: Session) -> None:
    code = textwrap.dedent("""
        import os, signal, sys
        # os.write, not print: the signal may land while print("ready") still holds stdout's buffer lock (its bytes
        # already in the file), and a print in the handler would then raise "reentrant call" and exit 1
        signal.signal(signal.SIGTERM, lambda *_: (os.write(1, b"got SIGTERM\\n"), os._exit(7)))
        print("ready", flush=True)
        signal.pause()
    """)
    rid, pid, out = session.run("c", code)
    wait_until(lambda: "ready" in out.read_text(), 60, "the handler to be installed")
    os.killpg(pid, signal.SIGTERM)  # what both clients do: the process leads its own group
    assert session.exit_code(rid) == 7
    assert "got SIGTERM" in out.read_text()
    rid, pid, out = session.run("c", "import signal; print('ready', flush=True); signal.pause()")
    wait_until(lambda: "ready" in out.read_text(), 60, "the process to start")
    os.killpg(pid, signal.SIGTERM)
    assert session.exit_code(rid) == -signal.SIGTERM


def test_the_cgroup_is_joined_before_the_process_is_reported_started(session: Session, tmp_path: Path) -> None:
    procs = tmp_path / "cgroup.procs"  # a plain file stands for the cgroup's: what is written, and when
    procs.write_text("")
    rid, pid, _out = session.run("c", "pass", cgroup_procs=str(procs))
    assert procs.read_text() == str(pid)
    assert session.exit_code(rid) == 0


def test_a_process_still_setting_up_does_not_hold_up_the_next_start(session: Session, tmp_path: Path) -> None:
    """Each request is handed to its process without waiting for the ones before it to confirm: pods that start
    together on the emulator's node start side by side, not one after the other. The first process here blocks
    joining its "cgroup" (a FIFO nobody reads yet) until the second one has been reported started."""
    fifo = tmp_path / "cgroup.procs"
    os.mkfifo(fifo)
    blocked, _ = session.send("c", "pass", cgroup_procs=str(fifo))
    rid, _pid, _out = session.run("c", "pass")
    assert session.exit_code(rid) == 0
    assert not [m for m in session.seen if blocked in (m.get("started"), m.get("failed"))], session.seen
    reader = os.open(fifo, os.O_RDONLY)  # lets the first process's write through
    try:
        joined = os.read(reader, 64).decode()
    finally:
        os.close(reader)
    assert session.started(blocked) == int(joined)
    assert session.exit_code(blocked) == 0


def test_a_spare_joins_a_cgroup_of_its_own_ahead_and_a_request_gets_it_renamed(tmp_path: Path) -> None:
    """Moving a process into a cgroup waits for an RCU grace period on cgroup v1 (1-20 ms on a loaded machine):
    a spare does it while it waits, in a cgroup of its own, and a request's cgroup is that one renamed, with the
    request's files (its limits) written, before the program runs. Plain directories stand for cgroups here."""
    parent = tmp_path / "memory"
    parent.mkdir()
    server = ForkServer.spawn(PY, [MARKER], {"PATH": os.environ["PATH"]}, str(tmp_path))
    try:
        server.hello(timeout=60)
        server.send({"op": "import", "modules": [], "spares": 1, "spare_cgroups": str(parent)})
        s = Session(server, tmp_path)
        s.next(lambda m: "imported" in m)
        own = wait_until(lambda: [d for d in parent.iterdir() if (d / "cgroup.procs").exists()], 60, "a spare's")[0]
        spare = int((own / "cgroup.procs").read_text())
        pod = parent / "pod-cgroup"
        rid, pid, _out = s.run("c", "pass", cgroup={"path": str(pod), "files": [["memory.limit_in_bytes", "123"]]})
        assert s.exit_code(rid) == 0
        assert pid == spare and not own.exists()
        assert (pod / "cgroup.procs").read_text() == str(pid) and (pod / "memory.limit_in_bytes").read_text() == "123"
        # without a spare of its own (another parent): the request's cgroup is made and joined at once
        other = tmp_path / "elsewhere"
        other.mkdir()
        rid, pid, _out = s.run("c", "pass", cgroup={"path": str(other / "pod"), "files": []})
        assert s.exit_code(rid) == 0 and (other / "pod" / "cgroup.procs").read_text() == str(pid)
    finally:
        server.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root (CI runs as root)")
def test_in_a_pid_namespace_the_process_is_pid_1_with_init_semantics(session: Session) -> None:
    # The kernel drops a signal PID 1 has no handler for (pid_namespaces(7)): the SIGTERM it sends itself is lost.
    code = "import os, signal; assert os.getpid() == 1; os.kill(1, signal.SIGTERM); print('survived', flush=True)"
    rid, _pid, out = session.run("c", code, pid_namespace=True)
    assert session.exit_code(rid) == 0 and out.read_text() == "survived\n"
    # SIGKILL from outside ends it, and the reported process ends as PID 1 did
    rid, pid, out = session.run("c", "import signal; print('ready', flush=True); signal.pause()", pid_namespace=True)
    wait_until(lambda: "ready" in out.read_text(), 60, "PID 1 to start")
    os.killpg(pid, signal.SIGKILL)
    assert session.exit_code(rid) == -signal.SIGKILL


@pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root (CI runs as root)")
@pytest.mark.parametrize(("code", "expected"), [("import sys; sys.exit(3)", 3), ("pass", 0)])
def test_pid_1s_end_is_reported_as_soon_as_it_is_reaped(session: Session, code: str, expected: int) -> None:
    # The container's end is PID 1's: "ended" comes when the reported process has reaped it, before that process's
    # own exit (the tear-down of a copy of the whole server, milliseconds on a loaded machine) and its "exited".
    rid, pid, _out = session.run("c", f"import os; os.getpid() == 1 or os._exit(99); {code}", pid_namespace=True)
    assert session.exit_code(rid) == expected
    ended = [m for m in session.seen if m.get("ended") == rid]
    assert ended == [{"ended": rid, "pid": pid, "code": expected}], session.seen


@pytest.mark.parametrize("how", ["SIGKILL", "EOF"])
def test_nothing_outlives_the_server(session: Session, how: str) -> None:
    code = "import os, subprocess, sys, signal; p = subprocess.Popen([sys.executable, '-c', 'import signal; signal.pause()']); print(os.getpid(), p.pid, flush=True); signal.pause()"  # noqa: E501
    _rid, pid, out = session.run("c", code)
    pids = wait_until(lambda: [int(p) for p in out.read_text().split()], 60, "the process and its child")
    assert pids[0] == pid and not any(gone(p) for p in pids)
    if how == "SIGKILL":  # no chance to clean up: the process dies with its parent (PR_SET_PDEATHSIG)
        os.kill(session.server.pid, signal.SIGKILL)
        wait_until(lambda: gone(pid), 30, "the process to die with the server")
        os.killpg(pid, signal.SIGKILL)  # what the client does with the group of a process reported dead
    else:  # the client closed its socket (or died): the server kills every process group it started
        session.server.close()
        wait_until(lambda: all(gone(p) for p in pids), 30, "the process group to be killed")


def test_the_cold_pid1_wrapper_mirrors_the_exit(tmp_path: Path) -> None:
    """``server.py --pid1 COMMAND``: the emulator's cold path; without root it simply execs COMMAND."""
    from kannon.forkserver import server

    done = subprocess.run([PY, "-I", "-S", server.__file__, "--pid1", PY, "-c", "import sys; sys.exit(9)"],
                          capture_output=True, timeout=60)  # fmt: skip
    assert done.returncode == 9, done.stderr


@pytest.mark.parametrize("how", ["spawned", "forked"])
def test_a_module_colon_function_entry_is_imported_then_called_once_before_any_process_is_forked(
    tmp_path: Path, how: str
) -> None:
    """``MOD:FUNC`` (kannon.childwarm:warm_up): what the call leaves behind is in every process forked after it, and
    a call that raises is reported like an import that fails, without ending the server."""
    (tmp_path / "warmmod.py").write_text("calls = 0\n\ndef warm():\n    global calls\n    calls += 1\n\n"
                                         "def broken():\n    raise ValueError('no warm-up here')\n")  # fmt: skip
    entries = ["warmmod:warm", "warmmod:broken", "warmmod:no_such_function"]
    if how == "spawned":
        server = ForkServer.spawn(PY, entries, {"PATH": os.environ["PATH"], "PYTHONPATH": str(tmp_path)},
                                  str(tmp_path))  # fmt: skip
        done = server.hello(timeout=60)
    else:
        sys.path.insert(0, str(tmp_path))
        try:
            server = ForkServer.start()
            assert "ready" in server.hello(timeout=60)
            server.send({"op": "import", "modules": entries, "spares": 1})
            s = Session(server, tmp_path)
            done = s.next(lambda m: "imported" in m)
            done["loaded"] = done.pop("imported")
        finally:
            sys.path.remove(str(tmp_path))
    s = Session(server, tmp_path)
    try:
        assert done["loaded"] == ["warmmod:warm"]
        assert [f.split(": ")[:2] for f in done["failed"]] == [["warmmod:broken", "ValueError"],
                                                               ["warmmod:no_such_function", "AttributeError"]]
        rid, _pid, out = s.run("c", "import warmmod; print(warmmod.calls)")
        assert s.exit_code(rid) == 0
        assert out.read_text().strip() == "1"
    finally:
        server.close()
        sys.modules.pop("warmmod", None)
