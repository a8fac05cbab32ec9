"""The ``kannon`` command: build / plan / hints suggest / backends / report / k8s rbac / run-task (the child
entrypoint).

Exit codes of ``kannon build``: 0 success, 1 some task failed, 2 bad input (nothing was launched),
130 / 143 interrupted by SIGINT / SIGTERM (every child cancelled first).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kannon import cliutil
from kannon.ship_child import ShipError

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class CliError(Exception):
    """Bad input: the message says what to change."""


# -- target loading --------------------------------------------------------------------------------------------
def load_config(configs: Sequence[str], workspace: str | None) -> None:
    """Must run before the target module is imported: module-level task instances read the config then."""
    import luigi

    for path in configs:
        if not Path(path).is_file():
            raise CliError(f"config file {path} does not exist (passed with --config)")
        luigi.configuration.LuigiConfigParser.add_config_path(path)
    if configs:
        luigi.configuration.LuigiConfigParser.reload()
    if workspace is not None:
        cfg = luigi.configuration.get_config()
        if not cfg.has_section("TaskOnKart"):
            cfg.add_section("TaskOnKart")
        cfg.set("TaskOnKart", "workspace_directory", workspace)


def load_target(target: str) -> tuple[Any, list[str]]:
    """``module:attr`` or ``path/to/file.py:attr`` -> (task instance, sys.path entries children need)."""
    import luigi

    module_part, sep, attr = target.rpartition(":")
    if not sep or not module_part or not attr:
        raise CliError(f"TARGET {target!r} must look like 'package.module:root' or 'path/to/file.py:root'")
    extra: list[str] = []
    if module_part.endswith(".py") or os.sep in module_part:
        path = Path(module_part).resolve()
        if not path.is_file():
            raise CliError(f"{module_part} does not exist (TARGET {target!r})")
        extra.append(str(path.parent))
        name = path.stem
        existing = sys.modules.get(name)
        if existing is not None and Path(getattr(existing, "__file__", "") or "").resolve() != path:
            raise CliError(f"{path} would be imported as module {name!r}, but another module of that name is already "
                           "imported; rename the file")  # fmt: skip
    else:
        extra.append(os.getcwd())
        name = module_part
    for p in reversed(extra):
        if p not in sys.path:
            sys.path.insert(0, p)
    try:
        module = importlib.import_module(name)
    except ImportError as e:
        raise CliError(f"cannot import {name!r} for TARGET {target!r}: {e}. Run kannon from the directory that "
                       "contains the package, or pass a file path.") from e  # fmt: skip
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CliError(f"{name} has no attribute {attr!r} (TARGET {target!r}); {cliutil.candidates(module)}")
        obj = getattr(obj, part)
    if isinstance(obj, type):
        raise CliError(f"{target} is the class {obj.__name__}; give a task instance or a function returning one")
    if callable(obj) and not isinstance(obj, luigi.Task):
        obj = obj()
    if not isinstance(obj, luigi.Task):
        raise CliError(f"{target} is a {type(obj).__name__}, not a gokart task instance")
    return obj, extra


# -- commands --------------------------------------------------------------------------------------------------
def _cmd_build(ns: argparse.Namespace) -> int:
    from kannon import progress
    from kannon.backends.base import BackendError
    from kannon.hints import Hints
    from kannon.plan import PlanError
    from kannon.plugins import get_backend
    from kannon.result import KannonBuildError
    from kannon.scheduler import Interrupted, Kannon
    from kannon.speccrypt import SpecKeyError

    try:
        spec = get_backend(ns.backend)
        _require_extra(spec)
        _check_hints_file(ns)
        growth = Hints(oom_growth=ns.oom_growth, oom_growth_cap=ns.oom_growth_cap).errors()
        if growth:
            raise CliError(f"{growth[0]} (--oom-growth / --oom-growth-cap)")
        load_config(ns.config, ns.workspace)
        root, extra = load_target(ns.target)
        executor = spec.from_cli(ns)
        shipped = cliutil.ship_code(ns, extra) if ns.backend != "local" else None
    except (CliError, LookupError, BackendError, ShipError) as e:
        print(f"kannon: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    observers: list[Any] = [progress.ProgressObserver(follow_logs=ns.follow_logs, notes=_limits(executor))]
    context = cliutil.run_context(ns)
    if ns.events:
        observers.append(progress.EventLogObserver(ns.events, context=context))
    if ns.report:
        observers.append(progress.ReportObserver(ns.report, context=context))
    options: dict[str, Any] = dict(
        executor=executor, max_parallel=ns.max_parallel, retries=ns.retries, keep_going=not ns.fail_fast,
        env_to_inherit=ns.env_to_inherit, follow_logs=ns.follow_logs, observers=observers, sys_path=extra,
        max_dynamic_runs=ns.max_dynamic_runs,
    )  # fmt: skip
    if ns.config_section:
        options["config_sections"] = ns.config_section
    if ns.hints:
        options["hints_file"] = ns.hints
    if ns.oom_growth is not None or ns.oom_growth_cap is not None:
        options["default_hints"] = Hints(oom_growth=ns.oom_growth, oom_growth_cap=ns.oom_growth_cap)
    if shipped is not None:
        options["ship_code"] = shipped
    if ns.wait_for_lease is not None:
        if "wait_for_lease" not in inspect.signature(Kannon).parameters:
            print("kannon: --wait-for-lease needs a kannon whose Kannon() takes wait_for_lease", file=sys.stderr)
            return EXIT_BAD_INPUT
        options["wait_for_lease"] = ns.wait_for_lease
    kannon = Kannon(**options)
    try:
        kannon.build(root)
    except (PlanError, BackendError, SpecKeyError) as e:
        print(f"kannon: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KannonBuildError:
        return EXIT_FAILED  # the progress observer already printed the summary with every failure
    except Interrupted as e:
        print(f"kannon: {e}; every child was cancelled", file=sys.stderr)
        return 128 + e.signum
    except Exception as e:
        if not cliutil.is_lease_held(e):
            raise
        wait = "; --wait-for-lease[=SECONDS] waits for it" if ns.wait_for_lease is None else ""
        print(f"kannon: another build of this pipeline holds its run lease: {getattr(e, 'holder', e)}{wait}",
              file=sys.stderr)  # fmt: skip
        return EXIT_BAD_INPUT
    finally:
        for obs in observers:  # restores the terminal even when build() failed before the run ended
            obs.close()
        _say_outputs(ns, observers)
    return 0


def _say_outputs(ns: argparse.Namespace, observers: list[Any]) -> None:
    """The run's end says where its event log and report are."""
    if ns.events and Path(ns.events).is_file():
        print(f"kannon: event log: {Path(ns.events).absolute()}", file=sys.stderr)
    if ns.report and Path(ns.report).is_file():
        kept = any(getattr(o, "kept_previous", False) for o in observers)
        what = "nothing to do (every task was already complete); kept the last run's report" if kept else "report"
        print(f"kannon: {what}: {Path(ns.report).absolute()}", file=sys.stderr)


def _check_hints_file(ns: argparse.Namespace) -> None:
    """A bad --hints file is refused before the pipeline is even imported (its families are checked at plan)."""
    from kannon import hintsfile

    if ns.hints:
        try:
            hintsfile.load(ns.hints)
        except hintsfile.HintsFileError as e:
            raise CliError(str(e)) from None


def _require_extra(spec: Any) -> None:
    from kannon.plugins import missing_extra

    missing = missing_extra(spec)
    if missing:
        raise CliError(f"the {spec.name} backend is unavailable: {missing}")


def _limits(executor: Any) -> list[str]:
    """A backend that enforces hints its own way says how (the local backend: which memory mechanism)."""
    describe = getattr(executor, "describe_limits", None)
    return [str(describe())] if describe is not None else []


def _cmd_plan(ns: argparse.Namespace) -> int:
    from kannon import hintsfile, importcheck
    from kannon.backends.base import BackendError
    from kannon.plan import PlanError
    from kannon.planview import render_plan
    from kannon.plugins import get_backend
    from kannon.scheduler import Kannon

    try:
        _require_extra(get_backend(ns.backend))
        _check_hints_file(ns)
        load_config(ns.config, ns.workspace)
        root, extra = load_target(ns.target)
        executor = get_backend(ns.backend).from_cli(ns) if ns.backend != "local" else None
        plan = Kannon(executor=executor, hints_file=ns.hints).plan(root)
        shipped = cliutil.ship_code(ns, extra) if ns.backend != "local" else None
        if shipped is not None and getattr(executor, "code_via", None) == "configmap":
            from kannon.backends.kubernetes import codemap

            codemap.check_size(shipped[1])  # the build refuses it (carry_code): the dry run says so too
        checked = executor if executor is not None else get_backend("local").from_cli(ns)
        # the dry run refuses what the build would: a bullet module its children cannot import (importcheck)
        try:
            problems, import_note = importcheck.check(plan, checked, extra, shipped[1].data if shipped else None,
                                                      str(shipped[0]) if shipped else None)  # fmt: skip
        except BackendError as e:  # a plan needs no engine or cluster; the build will say it cannot reach one
            problems, import_note = [], f"imports not checked: {e}"
        if problems:
            raise PlanError(problems)
    except (CliError, LookupError, BackendError, ShipError) as e:  # as the build: one line, exit 2
        print(f"kannon: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except PlanError as e:
        print(f"kannon: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    origins = hintsfile.origins(plan, hintsfile.load(ns.hints)) if ns.hints else None
    print(render_plan(plan, ns.format, origins=origins), end="")
    if shipped is not None:  # nothing is uploaded by a plan
        print(f"kannon: would ship {shipped[1].summary().removeprefix('shipped ')} from {shipped[0]}",
              file=sys.stderr)  # fmt: skip
    for note in [*_limits(checked), *([import_note] if import_note else [])]:
        print(f"kannon: {note}", file=sys.stderr)
    return 0


def _cmd_backends(ns: argparse.Namespace) -> int:
    from kannon.plugins import backends, load_errors, missing_extra

    found = backends()
    width = max((len(n) for n in found), default=4)
    for name, spec in sorted(found.items()):
        missing = missing_extra(spec)
        state = f"  UNAVAILABLE: {missing}" if missing else ""
        print(f"{name:<{width}}  {spec.description}  [from {spec.source}]{state}")
    for err in load_errors():
        print(f"kannon: error: {err}", file=sys.stderr)
    return 0 if not load_errors() else EXIT_FAILED


def _cmd_report(ns: argparse.Namespace) -> int:
    from kannon.report import write_report

    if not Path(ns.events).is_file():
        print(f"kannon: event log {ns.events} does not exist (write one with `kannon build --events FILE`)",
              file=sys.stderr)  # fmt: skip
        return EXIT_BAD_INPUT
    if ns.list:
        from kannon.events import read_events
        from kannon.report.model import runs

        for seg in runs(read_events(Path(ns.events))):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seg.started))
            tasks = sum(1 for e in seg.events if e.kind in ("planned", "skipped_complete"))
            print(f"{seg.index:>4}  {seg.run_id}  {when}  {tasks:>6} tasks  {seg.outcome}")
        return 0
    if not ns.output:
        print("kannon: report needs -o FILE.html (or --list)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        write_report(ns.events, ns.output, run=ns.run)
    except ValueError as e:
        print(f"kannon: {e}; `kannon report {ns.events} --list` shows them", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"kannon: wrote {ns.output}")
    return 0


def _cmd_logs(ns: argparse.Namespace) -> int:
    from kannon import logtail

    if ns.run_dir:
        bases = [Path(ns.run_dir).parent]
    else:
        bases = [Path(ns.workspace) / "kannon" / "runs", Path(".kannon") / "runs"]
    runs = logtail.run_logs(bases)
    if ns.run_dir:
        runs = [r for r in runs if r.run_id == Path(ns.run_dir).name]
    try:
        run = logtail.pick_run(runs, ns.run)
        path = logtail.pick_log(run, ns.task, ns.attempt)
    except LookupError as e:
        where = ns.run_dir or " or ".join(str(b) for b in bases)
        print(f"kannon: {e.args[0]} (looked in {where}; see --workspace / --run-dir)", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"kannon: {path}", file=sys.stderr)
    with path.open(encoding="utf-8", errors="replace") as f:  # a capped log is at most ~80 MiB: stream it
        sys.stdout.writelines(line for line in f if not line.startswith(logtail.STATUS_PREFIX))
    return 0


def _cmd_rbac(ns: argparse.Namespace) -> int:
    from kannon.backends.kubernetes import render_rbac

    print(render_rbac(ns.namespace, ns.service_account, name=ns.name), end="")
    return 0


def _cmd_run_task(argv: Sequence[str]) -> int:
    from kannon import child

    return child.main(argv)


# -- parser ----------------------------------------------------------------------------------------------------
def _add_target_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", help="module:attr or path/to/file.py:attr (a task, or a function "
                                                    "returning one)")  # fmt: skip
    p.add_argument("--config", action="append", default=[], metavar="FILE", help="luigi config file (repeatable)")
    p.add_argument("--workspace", metavar="DIR", help="set [TaskOnKart] workspace_directory before importing TARGET")
    p.add_argument("--backend", default="local", help="where bullets run (see `kannon backends`; default: local)")
    p.add_argument("--ship-code", action="store_true",
                   help="send the project's code with the run, so the image needs only the dependencies (ignored "
                        "by the local backend; docs/code-shipping.md)")  # fmt: skip
    p.add_argument("--code-root", metavar="DIR", help="directory holding the project's top-level packages (default: "
                                                      "where the target's top-level package was imported from)")
    p.add_argument("--hints", metavar="FILE", help="INI file of hints per task class, over the code's (file > instance "
                                                  "> class; `kannon hints suggest --format ini` writes one)")
    p.add_argument("--ship-code-max-mb", type=cliutil.positive_int, default=50, metavar="N",
                   help="refuse to ship more than N MiB of uncompressed code (default: 50)")  # fmt: skip


def make_parser() -> argparse.ArgumentParser:
    from kannon import suggest
    from kannon.plugins import backends

    parser = cliutil.OneLineParser(prog="kannon", description="Run a gokart pipeline distributed.")
    parser.add_argument("--version", action="version", version=f"kannon {cliutil.version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="run a pipeline")
    _add_target_options(b)
    b.add_argument("--max-parallel", type=cliutil.positive_int, metavar="N",
                   help="cap on running bullets (default: the backend's own: the number of CPUs for local, 32 for "
                        "docker and kubernetes)")  # fmt: skip
    b.add_argument("--retries", type=cliutil.non_negative_int, default=0, metavar="N",
                   help="extra attempts per failed bullet (default: 0)")  # fmt: skip
    b.add_argument("--max-dynamic-runs", type=cliutil.non_negative_int, default=100, metavar="N",
                   help="how often one task's run() may stop at a yield of incomplete tasks (dynamic dependencies) "
                        "and run again (default: 100)")  # fmt: skip
    b.add_argument("--wait-for-lease", type=cliutil.non_negative_float, nargs="?", const=cliutil.LEASE_WAIT_DEFAULT,
                   metavar="SECONDS",
                   help="if another build of the same pipeline is running, wait for it to end (at most SECONDS; "
                        f"{cliutil.LEASE_WAIT_DEFAULT:g} without a value) instead of exiting with code 2")  # fmt: skip
    b.add_argument("--fail-fast", action="store_true", help="cancel everything at the first failure")
    b.add_argument("--oom-growth", type=float, metavar="FACTOR", help="retry an OOM-killed bullet with memory x "
                   "FACTOR (at most 3 times, not counted as retries; per class: Hints(oom_growth=...))")
    b.add_argument("--oom-growth-cap", metavar="QUANTITY", help="never grow memory above this (e.g. 8Gi)")
    b.add_argument("--env-to-inherit", action="append", default=[], metavar="NAME",
                   help="environment variable passed to every child (repeatable)")  # fmt: skip
    b.add_argument("--config-section", action="append", default=[], metavar="NAME",
                   help="luigi config section to hand to children besides the ones they need (repeatable)")
    b.add_argument("--follow-logs", action="store_true", help="stream every child's output with a task prefix")
    b.add_argument("--events", metavar="FILE", help="write a JSON-lines event log")
    b.add_argument("--report", metavar="FILE.html", help="write a self-contained HTML report")
    for name, spec in sorted(backends().items()):
        if spec.add_options is not None:
            spec.add_options(b.add_argument_group(f"{name} backend"))
    b.set_defaults(func=_cmd_build)

    p = sub.add_parser("plan", help="show what a build would do (nothing runs)")
    _add_target_options(p)
    p.add_argument("--format", choices=["text", "dot", "mermaid", "json"], default="text")
    for name, spec in sorted(backends().items()):
        if spec.add_options is not None:
            spec.add_options(p.add_argument_group(f"{name} backend"))
    p.set_defaults(func=_cmd_plan)

    suggest.add_parser(sub)

    s = sub.add_parser("backends", help="list installed backends and where they come from")
    s.set_defaults(func=_cmd_backends)

    r = sub.add_parser("report", help="render an event log as a self-contained HTML report")
    r.add_argument("events", metavar="EVENTS.jsonl")
    r.add_argument("-o", "--output", metavar="FILE.html")
    r.add_argument("--run", metavar="N|RUN_ID",
                   help="which run of an appended log: N-th (1-based; -1 the last, the default) or a run id prefix")
    r.add_argument("--list", action="store_true", help="list the runs in the event log instead")
    r.set_defaults(func=_cmd_report)

    lg = sub.add_parser("logs", help="print the full log of a task's attempt (local, Docker and Kubernetes runs)",
                        description="Print the full log a bullet's attempt left in the run directory "
                                    "(<workspace>/kannon/runs/<run id>/logs/...).")  # fmt: skip
    lg.add_argument("task", metavar="TASK", help="task family name, task id prefix, or Family[id prefix]")
    lg.add_argument("--run", metavar="N|ID",
                    help="which run: N-th with logs (1-based; -1 the last, the default) or a run / invocation id "
                         "prefix")  # fmt: skip
    lg.add_argument("--attempt", type=cliutil.positive_int, metavar="N", help="which attempt (default: the last)")
    lg.add_argument("--workspace", default="resources", metavar="DIR",
                    help="the workspace directory the build used (default: resources)")  # fmt: skip
    lg.add_argument("--run-dir", metavar="DIR", help="a run directory (as printed at the end of a build)")
    lg.set_defaults(func=_cmd_logs)

    k = sub.add_parser("k8s", help="Kubernetes helpers")
    ksub = k.add_subparsers(dest="k8s_command", required=True)
    rb = ksub.add_parser("rbac", help="print the minimal Role/RoleBinding for the kubernetes backend")
    rb.add_argument("--namespace", required=True, metavar="NS",
                    help="the namespace kannon creates its Jobs in (the Role is namespaced)")  # fmt: skip
    rb.add_argument("--service-account", required=True, metavar="NAME",
                    help="the service account the master runs as (in-cluster), bound to the Role")  # fmt: skip
    rb.add_argument("--name", default="kannon", help="name of the Role and RoleBinding (default: kannon)")
    rb.set_defaults(func=_cmd_rbac)

    sub.add_parser("run-task", help="run one handed-off task (used by every backend)", add_help=False)
    sub.add_parser("run-pack", help="run the handed-off tasks in KANNON_PACK side by side (a pack)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["run-task"]:
        return _cmd_run_task(args[1:])  # the child path stays lean: no plugin loading, no parser for backends
    if args[:1] == ["run-pack"]:
        from kannon.pack import runner as pack_runner  # as lean as run-task's path: the members fork from it

        return pack_runner.main(args[1:])
    try:
        return _main(args)
    except KeyboardInterrupt:  # e.g. during start-up, while gokart or the user's module imports
        print("kannon: interrupted (Ctrl-C); nothing was left running", file=sys.stderr)
        return 130


def _main(args: list[str]) -> int:
    handler = logging.StreamHandler()
    handler.setFormatter(cliutil.PrefixFormatter("%(message)s"))
    # urllib3 logs a warning per retry of an unreachable API server; kannon reports each retry and the outcome
    # in one line. A filter, not a level: the kubernetes client resets urllib3's logger level when it is set up.
    handler.addFilter(lambda r: not (r.name.startswith("urllib3") and r.levelno < logging.ERROR))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("kannon").setLevel(logging.INFO)
    parser = make_parser()
    ns = parser.parse_args(args)
    if ns.command in ("build", "plan"):
        from kannon.plugins import backends

        if ns.backend not in backends():
            from kannon.plugins import get_backend

            try:
                get_backend(ns.backend)
            except LookupError as e:
                print(f"kannon: {e}", file=sys.stderr)
                return EXIT_BAD_INPUT
    return int(ns.func(ns))
