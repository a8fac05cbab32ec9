"""One build from plan to result: hold the lease, start the executor, run the loop and the master tasks, always
close and release — in that order, whatever fails half-way."""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from kannon import handoff, logtail, speccrypt
from kannon.backends.base import Executor, RunInfo
from kannon.events import Event
from kannon.pack.packer import pack_executor
from kannon.plan import Plan
from kannon.result import BuildResult, KannonBuildError
from kannon.scheduler import ids
from kannon.scheduler.env import ChildEnv, config_env_names
from kannon.scheduler.loop import Loop
from kannon.scheduler.specs import Specs
from kannon.scheduler.state import Policy, RunState

if TYPE_CHECKING:
    from kannon.scheduler import Kannon

log = logging.getLogger("kannon")

OBSERVER_DRAIN = 60.0  # at the end, observers get this long to catch up before build() returns


class Interrupted(KeyboardInterrupt):
    """The build was interrupted by a signal; every child was cancelled first. ``signum`` says which."""

    def __init__(self, signum: int, result: BuildResult | None = None) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.result = result


def run_info(k: Kannon, plan: Plan, invocation: str | None = None, env: ChildEnv | None = None) -> RunInfo:
    workspace = ids.workspace_of(plan.nodes[plan.root_id].task)
    rid = ids.run_id(plan.root_id, workspace)
    base = Path(k.run_dir) if k.run_dir is not None else None
    secrets = dict(env.inherited) if env is not None else {}
    run_dir = ids.run_dir(rid, workspace, base)
    if env is not None:  # a real run (not a dry look at its ids): specs are sealed with this run's key
        secrets[speccrypt.KEY_ENV] = speccrypt.run_key(run_dir)
    # follow_logs is always on for the backends: a bullet's status lines travel in its output (kannon.logtail), so
    # output must stream even when nobody prints it; Kannon.follow_logs decides only what is printed (Loop).
    return RunInfo(rid, run_dir, True, invocation or ids.invocation_id(), secrets)


def execute(k: Kannon, executor: Executor, plan: Plan) -> BuildResult:
    # the config sections a child gets (handoff.config_for_child); the variables they refer to travel as secrets
    classes = [type(n.task) for n in plan.nodes.values()]
    child_config = handoff.config_for_child(handoff.luigi_config_snapshot(), classes, getattr(k, "config_sections", ()))
    child_env = ChildEnv([*k.env_to_inherit, *config_env_names(child_config)])
    for name in logtail.too_short(child_env.inherited):
        log.warning("kannon: env %s is too short to mask in logs (fewer than %d characters): a child that prints it "
                    "shows it in the console, the event log and the report", name, logtail.MIN_MASKED)  # fmt: skip
    info = run_info(k, plan, env=child_env)
    if not executor.delivers_secrets:
        log.warning("kannon: the %s backend does not declare that it delivers secrets safely "
                    "(Executor.delivers_secrets): the run's inherited values and spec key travel in each launch's "
                    "environment", executor.name)  # fmt: skip
    planner = executor  # plan-time questions (dynamic dependencies' hints) go to the backend itself
    executor = pack_executor(executor, getattr(executor, "pack_size", 1))
    parallel = k.max_parallel or executor.default_parallelism
    policy = Policy(max_parallel=parallel, max_submitted=executor.submit_limit(parallel), retries=k.retries,
                    retry_delay=k.retry_delay, retry_delay_max=k.retry_delay_max, infra_retries=k.infra_retries,
                    keep_going=k.keep_going, max_dynamic_runs=k.max_dynamic_runs)  # fmt: skip
    machine = RunState(plan, policy, info.run_id, executor.name, info.invocation_id)
    loop = Loop(machine, executor, plan, info, Specs(executor, info.run_id, info.run_dir, k.sys_path, k.shipment,
                                                    info.secrets[speccrypt.KEY_ENV], task_classes=classes,
                                                    config=child_config),
                child_env, print_logs=k.follow_logs,
                planner=lambda tasks: k.plan_requested(planner, tasks))  # fmt: skip
    info.run_dir.mkdir(parents=True, exist_ok=True)
    # Before start(): a backend sweeps or adopts a previous master's children in start(), and only the holder may.
    executor.acquire_lease(info, k.wait_for_lease)
    try:
        with planned_heap_frozen():
            return _run(k, executor, loop, info)
    finally:
        loop.io.close()
        loop.observers.close()
        try:  # before the lease goes: the next holder of this run writes specs at the same locations
            loop.specs.cleanup()
        except Exception:
            log.exception("deleting the run's spec files failed")
        executor.release_lease()


# Objects frozen before anyone could freeze any: none, except on some interpreters (Python 3.12.1 starts with a few
# hundred). More than this when a build starts means someone froze the heap on purpose.
_FROZEN_AT_IMPORT = gc.get_freeze_count()


@contextmanager
def planned_heap_frozen() -> Iterator[None]:
    """Leave what exists when the run starts out of the cyclic garbage collector's full passes until it ends.

    The plan (every task, its parameters, the hand-off's nodes) lives for the whole run, yet each full collection
    walked all of it: the collector's share of the master's CPU per task grew with the DAG's size. ``gc.freeze()``
    sets it aside, ``gc.unfreeze()`` gives it back. A heap already frozen on purpose (a pre-fork server, a build
    inside a master task, a build in another thread) is left as it is: unfreezing would undo that freeze."""
    if gc.get_freeze_count() > _FROZEN_AT_IMPORT:
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _run(k: Kannon, executor: Executor, loop: Loop, info: RunInfo) -> BuildResult:
    plan = loop.plan
    loop.specs.sweep()  # a crashed master's spec files (now ours to delete)
    with loop.master.signals():  # from here on a signal cancels the run (and interrupts only user code)
        try:
            # may fork the local zygote: no threads of ours exist yet (the pools start lazily, below)
            executor.start(info, loop.post)
            loop.notify("kannon_run_start", run=info, backend=executor.name)
            executor.prepare(plan.bullet_modules())
            if k.import_note:  # the plan-time import check was not possible (importcheck)
                log.warning("kannon: %s", k.import_note)
            thread = threading.Thread(target=loop.run_guarded, name="kannon-loop", daemon=True)
            thread.start()
            loop.master.serve()
            thread.join()
        finally:
            try:
                executor.close()
            except Exception:
                log.exception("closing the %s backend failed", executor.name)
    done = loop.done
    assert done is not None
    result = done.result
    result.run_dir, result.invocation_id = str(info.run_dir), info.invocation_id
    result.finished_at = time.time()
    outcome = "cancelled" if result.cancelled else ("ok" if result.ok else "failed")
    loop.notify("kannon_event", event=Event(kind="run_finished", run_id=info.run_id, reason=outcome,
                                            counts=result.counts()))  # fmt: skip
    loop.notify("kannon_run_end", run=info, result=result)
    if not loop.observers.drain(OBSERVER_DRAIN):
        log.warning("kannon: observers still busy %.0f s after the run ended; not waiting for them", OBSERVER_DRAIN)
    if done.signum is not None:
        raise Interrupted(done.signum, result)
    if not result.ok:
        raise KannonBuildError(result)
    return result
