"""Kannon: plan, then one event-driven loop that runs master tasks here and hands bullets to an executor.

The package, one idea per module (docs/design.md, "The core"):

* ``state``  — the run as a pure state machine (events in, actions out; no I/O, threads or clock);
* ``loop``   — the thin loop thread that feeds it and carries its actions out;
* ``master`` — master tasks on the main thread, the only place a signal may interrupt user code;
* ``io``     — a small pool for network I/O (``complete()``, spec uploads) and the ordered observer lane;
* ``env``    — the child environment, computed once; ``ids`` — run id, invocation id, run/log paths;
* ``run``    — one build's lifecycle: lease, start, loop, close, release.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import luigi

from kannon import importcheck, reqmemo, runner, ship, storage
from kannon.backends.base import Executor
from kannon.hints import Hints
from kannon.plan import Plan, PlanError, make_plan, plan_requested
from kannon.plugins import get_backend, plugin_manager
from kannon.result import BuildResult, Placement
from kannon.scheduler import env as child_env
from kannon.scheduler.ids import workspace_of as workspace_of
from kannon.scheduler.run import Interrupted, execute
from kannon.ship import Archive, Shipment

log = logging.getLogger("kannon")

LEGACY_K8S_ARGS = ("api_instance", "template_job", "job_prefix", "path_child_script", "master_pod_name",
                   "master_pod_uid", "dynamic_config_paths")  # fmt: skip


class Kannon:
    """Build a gokart pipeline: master tasks here, ``TaskOnBullet`` tasks through ``executor``.

    Args:
        executor: where bullets run (default: ``LocalExecutor()``).
        max_parallel: cap on running bullets (default: the executor's default parallelism).
        retries: extra attempts per bullet after a failure (per class: ``kannon_hints = Hints(retries=...)``).
        retry_delay: first retry backoff in seconds; doubles per attempt, capped at ``retry_delay_max``.
        keep_going: finish every branch that does not depend on a failure (True), or cancel everything at the first
            final failure (False).
        env_to_inherit: names of environment variables passed from the master to every child.
        infra_retries: extra attempts for infrastructure failures (eviction, preemption, image pull flakes) that do
            not spend the task's own retries.
        run_dir: local directory for logs and local specs (default: ``<workspace>/kannon/runs/<run id>`` for a
            local workspace, else ``./.kannon/runs/<run id>``).
        follow_logs: stream every child's output as it runs.
        observers: objects with ``@kannon.hookimpl`` methods, registered for this build only.
        wait_for_lease: another master holds this run's lease: None fails at once with ``LeaseHeld`` (naming the
            holder), a number waits up to that many seconds for it.
        ship_code: send the project's code with the run (docs/code-shipping.md): True packages the code root of
            the root task's top-level package, ``(code_root, ship.Archive)`` a prepared archive; None follows the
            executor's own ``ship_code``. The local backend ignores it (its children run the master's files).
        config_sections: luigi config sections to hand to children besides the ones they need (docs/design.md).
        hints_file: an INI file of hints per task class laid over the code's (file > instance > class;
            kannon.hintsfile, docs/observability.md "Right-sizing"); a bad file raises PlanError before any launch.
        default_hints: hints for every bullet, under its class's (e.g. ``Hints(oom_growth=1.5)``, kannon.oomgrowth).
        max_dynamic_runs: how often one task's run() may stop at a ``yield`` of incomplete tasks (dynamic
            dependencies) and be run again before it fails.

    The original kannon's keyword arguments (``api_instance``, ``template_job``, ``job_prefix``, ...) still work and
    select the Kubernetes backend, with a DeprecationWarning.
    """

    def __init__(
        self,
        executor: Executor | None = None,
        max_parallel: int | None = None,
        retries: int = 0,
        keep_going: bool = True,
        *legacy_args: Any,
        retry_delay: float = 1.0,
        retry_delay_max: float = 60.0,
        env_to_inherit: Sequence[str] = (),
        infra_retries: int = 3,
        run_dir: str | os.PathLike[str] | None = None,
        follow_logs: bool = False,
        observers: Iterable[object] = (),
        sys_path: Sequence[str] = (),
        max_child_jobs: int | None = None,
        wait_for_lease: float | None = None,
        ship_code: bool | tuple[Path, Archive] | None = None,
        config_sections: Sequence[str] = (),
        hints_file: str | os.PathLike[str] | None = None,
        default_hints: Hints | None = None,
        max_dynamic_runs: int = 100,
        **legacy: Any,
    ) -> None:
        if executor is not None and not isinstance(executor, Executor):
            # kannon 0.1.x: Kannon(api_instance, template_job, job_prefix, path_child_script="./run_child.py",
            # env_to_inherit=None) — positionally. Its job_prefix was a required string.
            if not isinstance(retries, str) or len(legacy_args) > 1:
                raise TypeError("executor must be a kannon Executor (or use the 0.1.x form Kannon(api_instance, "
                                "template_job, job_prefix, ...))")  # fmt: skip
            legacy.update(api_instance=executor, template_job=max_parallel, job_prefix=retries)
            if isinstance(keep_going, str):
                legacy["path_child_script"] = keep_going
            if legacy_args:
                env_to_inherit = tuple(legacy_args[0] or ())
            executor, max_parallel, retries, keep_going = None, None, 0, True
        elif legacy_args:
            raise TypeError(f"Kannon() takes at most 4 positional arguments ({4 + len(legacy_args)} given)")
        unknown = set(legacy) - set(LEGACY_K8S_ARGS)
        if unknown:
            raise TypeError(f"Kannon() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        if legacy or max_child_jobs is not None:
            if legacy:
                warnings.warn(
                    "Kannon(api_instance=..., template_job=..., ...) is deprecated: use "
                    "Kannon(executor=K8sJobExecutor(template_job=..., namespace=...)). The child script "
                    "(path_child_script) is no longer needed: every backend runs `python -m kannon run-task`.",
                    DeprecationWarning,
                    stacklevel=2,
                )
                if executor is not None:
                    raise TypeError("pass either executor= or the legacy Kubernetes arguments, not both")
                executor = get_backend("kubernetes").factory(legacy=True, **legacy)
            if max_child_jobs is not None and max_parallel is None:
                max_parallel = max_child_jobs
        if max_parallel is not None and max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        if max_dynamic_runs < 0:
            raise ValueError("max_dynamic_runs must be >= 0")
        self.executor = executor
        self.max_parallel = max_parallel
        self.retries = retries
        self.keep_going = keep_going
        self.retry_delay = retry_delay
        self.retry_delay_max = retry_delay_max
        self.env_to_inherit = tuple(env_to_inherit)
        self.infra_retries = infra_retries
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.follow_logs = follow_logs
        self.observers = list(observers)
        self.sys_path = tuple(sys_path)
        self.wait_for_lease = wait_for_lease
        self.ship_code = ship_code
        self.config_sections = tuple(config_sections)
        self.hints_file = hints_file
        self.default_hints = default_hints
        self.max_dynamic_runs = max_dynamic_runs
        self.shipment: Shipment | None = None  # set by build(): what this run ships, once uploaded
        self.import_note: str | None = None  # set by build(): why the plan-time import check was not possible

    # -- public -------------------------------------------------------------------------------------------------
    def plan(self, root: luigi.Task) -> Plan:
        return self._plan(root, self._executor())

    def build(self, root: luigi.Task) -> BuildResult:
        """Run everything ``root`` needs; returns the BuildResult or raises KannonBuildError / Interrupted."""
        runner.quiet_luigi()
        executor = self._executor()
        from kannon.progress.logs import log_printers  # not kannon.progress's console view: rich is slow to import

        pm = plugin_manager()
        # follow_logs from the API prints child output too (the CLI passes its own printing observer).
        observers = [*self.observers, *log_printers(self.observers, self.follow_logs)]
        for obs in observers:
            if not pm.is_registered(obs):
                pm.register(obs)
        try:
            # requires() of each task once for the whole build: plan, hand-off, runs (kannon.reqmemo)
            with reqmemo.once_per_build():
                plan = self._plan(root, executor)
                _check_master_thread(plan)
                shipped = self._code_to_ship(executor, plan)
                # Every bullet's module must import where its child runs: checked before anything runs (importcheck),
                # and before the archive is uploaded: a refused build leaves nothing behind.
                problems, note = importcheck.check(
                    plan, executor, self.sys_path, shipped[1].data if shipped else None,
                    str(shipped[0]) if shipped else None)  # fmt: skip
                if problems:
                    raise PlanError(problems)
                self.shipment = self._upload(executor, plan, *shipped) if shipped else None
                self.import_note = note  # said once the backend is up (scheduler/run.py), not before an early failure
                return execute(self, executor, plan)
        finally:
            for obs in observers:
                if pm.is_registered(obs):
                    pm.unregister(obs)

    def plan_requested(self, executor: Executor, tasks: list[luigi.Task]) -> Plan:
        """Plan the tasks a master task's ``yield`` asked for with the checks of :meth:`build`'s plan: pruning,
        hints, hand-off, and the import check of new bullets (dynamic dependencies)."""
        plan = self._overlay_hints(plan_requested(tasks, validate_hints=self._validator(executor)), executor)
        problems, _ = importcheck.check(
            plan, executor, self.sys_path, self.shipment.archive.data if self.shipment else None,
            str(self.shipment.code_root) if self.shipment else None)  # fmt: skip
        if problems:
            raise PlanError(problems)
        return plan

    def _plan(self, root: luigi.Task, executor: Executor) -> Plan:
        return self._overlay_hints(make_plan(root, validate_hints=self._validator(executor)), executor)

    def _overlay_hints(self, plan: Plan, executor: Executor) -> Plan:
        """Lay ``default_hints`` under and the hints file over the code's hints, for static and yielded plans."""
        if self.default_hints is not None:
            for node in plan.nodes.values():
                if node.placement is Placement.BULLET:
                    node.hints = self.default_hints.merged(node.hints or Hints())
        if self.hints_file is not None:
            from kannon import hintsfile

            hintsfile.apply_to_plan(plan, hintsfile.load(self.hints_file), self._validator(executor))
        return plan

    def _code_to_ship(self, executor: Executor, plan: Plan) -> tuple[Path, Archive] | None:
        """The (code root, archive) this build ships, built but not uploaded; None when it ships nothing."""
        wanted = self.ship_code if self.ship_code is not None else getattr(executor, "ship_code", False)
        if not wanted or executor.name == "local":
            return None
        if isinstance(wanted, tuple):
            return Path(wanted[0]), wanted[1]
        code_root = ship.code_root_for(type(plan.nodes[plan.root_id].task).__module__)
        return code_root, ship.prepare(code_root)

    @staticmethod
    def _upload(executor: Executor, plan: Plan, code_root: Path, archive: Archive) -> Shipment:
        """Upload the code archive once per content to ``<workspace>/kannon/code/`` (the root task's workspace),
        unless the backend carries it itself (``carry_code``: Kubernetes' per-run ConfigMap, docs/code-shipping.md)."""
        carry = getattr(executor, "carry_code", None)
        location = carry(archive) if carry is not None else None
        if location is None:
            workspace = workspace_of(plan.nodes[plan.root_id].task)  # absolute: a child's cwd may differ from ours
            location = ship.upload(archive, workspace if storage.is_remote(workspace) else os.path.abspath(workspace))
        log.info("kannon: %s from %s, at %s", archive.summary(), code_root, location)  # the run's header says it
        return Shipment(archive, code_root, location)

    @staticmethod
    def _validator(executor: Executor) -> Any:
        def validate(family: str, hints: Hints) -> list[str]:
            return child_env.hint_problems(family, hints) + executor.validate(family, hints)

        return validate

    def _executor(self) -> Executor:
        if self.executor is None:
            from kannon.backends.local import LocalExecutor

            self.executor = LocalExecutor()
        return self.executor


def _check_master_thread(plan: Plan) -> None:
    # gokart.build, which runs master tasks, installs signal handlers: only the main thread may. Refuse before
    # anything is launched rather than fail on the first master task with bullets already running.
    if threading.current_thread() is threading.main_thread():
        return
    pending = [n.family for n in plan.nodes.values() if n.placement is Placement.MASTER]
    if pending:
        raise PlanError([
            f"Kannon.build() was called from thread {threading.current_thread().name!r}, but {len(pending)} "
            f"master task(s) must run ({', '.join(sorted(set(pending))[:5])}), and gokart.build, which runs them, "
            "installs signal handlers, which only the main thread may. Call build() from the main thread, or "
            "run the pipeline in its own process (`kannon build MODULE:ROOT`, or multiprocessing)."
        ])


__all__ = ["Interrupted", "Kannon", "PlanError"]
