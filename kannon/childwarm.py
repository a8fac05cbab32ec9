"""Warm a process that forks children (the local fork server, the emulator's warm pods): ``warm_up()`` once there.

Importing gokart is not all a child's first ``gokart.build`` pays for: the modules the child path imports lazily,
and what luigi, gokart and dill build on their first use (a worker, a scheduler, a first dump) cost every forked
child again, since a child's work dies with it. One private no-op build in the forking process pays that once, for
every child it forks (docs/benchmarks.md, "A warmed fork server").

The build must leave no trace a child could see: no task class, instance, logger setting, signal handler, random
state, thread or file of its own is left behind, so a warmed process forks the same children as before, only
cheaper. What it runs under is the process's own luigi configuration, as a child's build would.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator

from kannon.forkserver.server import catchable_signals


def warm_up() -> None:
    """Import the child path and run one private no-op ``gokart.build``, leaving the process as it found it."""
    import gokart
    from luigi.task_register import Register

    import kannon.child  # noqa: F401 - the entry point, and what it imports only when a task runs:
    from kannon import childresult, dynamic, handoff, measure, runner, secretfile, ship_child, storage  # noqa: F401
    from kannon import speccrypt as sealing

    # Every spec is sealed: OpenSSL sets up its cipher tables on first use, ~800 page faults a child paid per bullet.
    key = sealing.new_key()
    sealing.open_sealed(sealing.seal(b"{}", key), key)

    registered = list(Register._reg)  # the build's own class, and what run_one drops, are put back below

    class _KannonWarmUp(gokart.TaskOnKart[int]):  # type: ignore[misc]  # gokart is untyped
        def run(self) -> None:
            self.dump(1)

    try:
        with _kept_state(), tempfile.TemporaryDirectory(prefix="kannon-warm-up-") as workspace:
            runner.quiet_luigi()  # as the child does before its build (restored by _kept_state)
            with handoff.fresh_instances():  # its config instances and task stay out of the process's cache
                # Explicit: a workspace or lock server in the process's config must not see this build.
                task = _KannonWarmUp(workspace_directory=workspace, redis_host=None,
                                     fix_random_seed_methods=["random.seed", "numpy.random.seed"])  # fmt: skip
                runner.run_one(task)
    finally:
        Register._reg = registered


@contextlib.contextmanager
def _kept_state() -> Iterator[None]:
    """Put back what a build changes process-wide: logging, luigi's logging flag, signal handlers, random states."""
    import luigi.setup_logging

    manager = logging.Logger.manager
    loggers = [logging.getLogger(), *(lg for lg in manager.loggerDict.values() if isinstance(lg, logging.Logger))]
    saved_loggers = [(lg, lg.level, list(lg.handlers), lg.propagate, lg.disabled) for lg in loggers]
    saved_disable, saved_configured = manager.disable, luigi.setup_logging.InterfaceLogging._configured
    saved_signals = {s: signal.getsignal(s) for s in catchable_signals()}
    saved_random = random.getstate()
    numpy = sys.modules.get("numpy")
    saved_numpy = numpy.random.get_state() if numpy is not None else None
    threads = set(threading.enumerate())
    try:
        yield
    finally:
        made = [lg for lg in manager.loggerDict.values() if isinstance(lg, logging.Logger) and lg not in loggers]
        for lg, level, handlers, propagate, disabled in [*saved_loggers, *((lg, 0, [], True, False) for lg in made)]:
            lg.setLevel(level)
            lg.handlers[:] = handlers
            lg.propagate, lg.disabled = propagate, disabled
        logging.disable(saved_disable)
        luigi.setup_logging.InterfaceLogging._configured = saved_configured
        for signum, handler in saved_signals.items():
            if signal.getsignal(signum) is not handler and handler is not None:
                signal.signal(signum, handler)
        random.setstate(saved_random)
        if saved_numpy is not None and numpy is not None:
            numpy.random.set_state(saved_numpy)
        for t in set(threading.enumerate()) - threads:  # luigi's keep-alive thread is stopped when its worker ends
            t.join(timeout=5)
