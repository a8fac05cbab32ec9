"""kannon.childwarm: the fork server's one private no-op build. A warmed process must fork children that import
nothing more for a no-op bullet, and the build must leave no trace in the process a child (or any other program
forked from it) could see. Real processes: each check runs in a fresh interpreter."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from kannon import handoff, speccrypt
from tests.support.tasks import Bullet

REPO = Path(__file__).resolve().parents[2]


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})  # fmt: skip


def test_a_child_forked_from_a_warmed_process_runs_a_bullet_without_importing_anything(tmp_path: Path) -> None:
    """What a forked child imports it pays for on every bullet (kannon.measure, kannon.dynamic, ... were imported
    by every child of a server that had imported only kannon.child)."""
    task = Bullet(name="warm", workspace_directory=str(tmp_path / "ws"))
    data = handoff.Encoder().spec(task, "run-1", {}, [str(REPO)])
    spec = tmp_path / "spec.json"
    spec.write_bytes(data)
    args = list(handoff.child_args(str(spec), handoff.unique_id(task), hashlib.sha256(data).hexdigest()))[-6:]
    out = _python(f"""
        import json, os, sys
        import kannon.childwarm, tests.support.tasks  # as the fork server: the run's modules, then the warm-up
        kannon.childwarm.warm_up()
        before = set(sys.modules)
        pid = os.fork()
        if pid == 0:
            import kannon.child
            code = kannon.child.main({args!r})
            with open("new.json", "w") as f:
                json.dump(sorted(set(sys.modules) - before), f)
            os._exit(code)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        """, tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "0", out.stderr[-3000:]
    assert json.loads((tmp_path / "new.json").read_text()) == []
    assert task.output().load() == "warm()"


def test_a_child_of_a_warmed_process_opens_a_sealed_spec_without_initialising_openssl(tmp_path: Path) -> None:
    """Every spec a child opens is sealed (AES-GCM): OpenSSL sets up its cipher tables on the first use in a process,
    which a forked child paid again for every bullet (~800 page faults, ~3 ms of system time) unless the forking
    process has opened one already. Page faults of the first open in a forked child: warmed against not warmed."""
    key = speccrypt.new_key()
    blob = speccrypt.seal(b'{"kannon_spec": 1}' * 50, key)  # here: sealing in that process would set OpenSSL up
    out = _python(f"""
        import json, os, resource, sys
        from kannon import childwarm, speccrypt
        key, blob = {key!r}, bytes.fromhex({blob.hex()!r})

        def faults_of_first_open_in_a_child():
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                speccrypt.open_sealed(blob, key)
                os.write(w, str(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before).encode())
                os._exit(0)
            os.close(w)
            faults = int(os.read(r, 64))
            os.waitpid(pid, 0)
            return faults

        cold = faults_of_first_open_in_a_child()
        childwarm.warm_up()
        print(json.dumps({{"cold": cold, "warm": faults_of_first_open_in_a_child()}}))
        """, tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    faults = json.loads(out.stdout)
    assert faults["warm"] * 3 < faults["cold"], faults


SNAPSHOT = """
    import json, logging, os, random, signal, sys, tempfile, threading
    import luigi, luigi.configuration, luigi.setup_logging, numpy
    from luigi.task_register import Register

    def snapshot():
        m = logging.Logger.manager
        loggers = {"": logging.getLogger(),
                   **{n: lg for n, lg in m.loggerDict.items() if isinstance(lg, logging.Logger)}}
        cfg = luigi.configuration.get_config()
        return {
            "registry": [c.__module__ + "." + c.__qualname__ for c in Register._reg],
            "instances": len(Register._Register__instance_cache or {}),
            "random": repr(random.getstate()), "numpy": repr(numpy.random.get_state()),
            "signals": {s.name: repr(signal.getsignal(s)) for s in signal.valid_signals()
                        if isinstance(s, signal.Signals) and s not in (signal.SIGKILL, signal.SIGSTOP)},
            # a logger made meanwhile may stay, in the state logging.getLogger() would make it in
            "loggers": {n: state for n, lg in loggers.items()
                        if (state := [lg.level, [id(h) for h in lg.handlers], lg.propagate, lg.disabled])
                        != [logging.NOTSET, [], True, False]},
            "disable": m.disable, "luigi_logging_configured": luigi.setup_logging.InterfaceLogging._configured,
            "threads": [t.name for t in threading.enumerate()],
            # gokart.build registers a FAILURE handler on TaskOnKart per call and never removes it
            "event_handlers": {c.__qualname__: {e: sorted(map(repr, cbs)) for e, cbs in events.items()}
                               for c, events in luigi.Task._event_callbacks.items()},
            "cwd": sorted(os.listdir(".")),
            "tmp": sorted(n for n in os.listdir(tempfile.gettempdir()) if n.startswith("kannon-warm-up-")),
            "environ": dict(os.environ),
            "config": {s: dict(cfg.items(s)) for s in cfg.sections()},
        }
"""


def test_warm_up_leaves_the_process_as_it_found_it(tmp_path: Path) -> None:
    """A child forked after the warm-up must see the process a child saw before it: the same task registry and
    instance cache, event handlers, logging, signal handlers (luigi's worker installs one for SIGUSR1), random
    states, threads and files. The process's own config names a workspace and a lock server the warm-up must not
    use: a child's build would, this one is private (redis on port 1 refuses at once)."""
    (tmp_path / "luigi.cfg").write_text(
        f"[TaskOnKart]\nworkspace_directory = {tmp_path / 'configured-ws'}\nredis_host = 127.0.0.1\nredis_port = 1\n"
    )
    out = _python(SNAPSHOT + """
    import gokart, kannon.childwarm
    logging.getLogger().addHandler(logging.StreamHandler())
    logging.getLogger("luigi-interface").setLevel(logging.DEBUG)
    before = snapshot()
    kannon.childwarm.warm_up()
    after = snapshot()
    print(json.dumps({"config": before["config"],
                      "changed": {k: [before[k], after[k]] for k in before if before[k] != after[k]}}))
    """, tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["config"]["TaskOnKart"]["redis_port"] == "1"  # the process's config was in effect
    assert result["changed"] == {}, json.dumps(result["changed"])
    assert not (tmp_path / "configured-ws").exists()
