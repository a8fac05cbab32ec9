"""Planning: walk the DAG once, prune complete subtrees, place each task, validate everything before launch."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import luigi
from luigi.task import flatten

from kannon import dag, instcache
from kannon.handoff import Encoder, HandoffError, describe, short_params, unique_id, verify_round_trips
from kannon.hints import Hints
from kannon.result import Placement
from kannon.task import TaskOnBullet


@dataclass(slots=True)  # one per task of the plan
class Node:
    task_id: str
    task: luigi.Task
    family: str
    params: str
    placement: Placement
    deps: tuple[str, ...] = ()  # unique ids this task requires (empty for complete nodes: not walked)
    hints: Hints | None = None  # bullets only


@dataclass
class Plan:
    root_id: str
    nodes: dict[str, Node] = field(default_factory=dict)  # discovery order, root first

    @property
    def todo(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.placement is not Placement.COMPLETE]

    def bullet_modules(self) -> list[str]:
        return sorted({type(n.task).__module__ for n in self.nodes.values() if n.placement is Placement.BULLET})


class PlanError(Exception):
    """The DAG cannot be run as given. ``problems`` has one actionable sentence per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        head = f"kannon found {len(problems)} problem(s) before launching anything:"
        super().__init__("\n".join([head, *(f"  - {p}" for p in problems)]))


def make_plan(
    root: object,
    validate_hints: Callable[[str, Hints], list[str]] | None = None,
    verify_handoff: bool = True,
    complete_check_threads: int = 16,
) -> Plan:
    """Walk ``root``'s DAG; raise PlanError listing every problem found (nothing has run yet)."""
    if not isinstance(root, luigi.Task):
        raise PlanError([
            f"the root must be a gokart task instance, got {type(root).__name__} ({root!r:.80}). Pass an instance such "
            "as MyTask(param=...), or a zero-argument function returning one."
        ])  # fmt: skip
    plan = _plan([root], validate_hints, verify_handoff, complete_check_threads)
    instcache.share_key_pairs()  # every task of the plan is constructed now; held for the whole run
    return plan


def plan_requested(
    tasks: list[luigi.Task],
    validate_hints: Callable[[str, Hints], list[str]] | None = None,
    verify_handoff: bool = True,
    complete_check_threads: int = 16,
) -> Plan:
    """Plan the tasks a ``yield`` in run() asked for (dynamic dependencies) exactly as a static DAG is planned:
    pruned where complete, placed, hints and hand-off validated. ``root_id`` is the first task's id."""
    bad = [t for t in tasks if not isinstance(t, luigi.Task)]
    if bad or not tasks:
        raise PlanError([f"run() yielded {type(bad[0]).__name__ if bad else 'nothing'}, not a task. A yield in "
                         "run() must give tasks (or lists/dicts of tasks)."])  # fmt: skip
    return _plan(list(tasks), validate_hints, verify_handoff, complete_check_threads)


def _plan(
    roots: list[luigi.Task],
    validate_hints: Callable[[str, Hints], list[str]] | None,
    verify_handoff: bool,
    complete_check_threads: int,
) -> Plan:
    problems: list[str] = []

    # 1. Discover every object once (post-order), so unique ids are computed leaves-first: gokart's own recursion
    #    would otherwise exceed Python's recursion limit on deep chains and loop forever on a cycle.
    try:
        walked = dag.walk(roots)
    except dag.CycleError as e:
        raise PlanError([f"requires() forms a cycle: {e}. Break the cycle."]) from e
    for task, error in walked.errors:
        problems.append(f"{type(task).__name__}({task.task_id}): requires() raised {type(error).__name__}: {error}. "
                        "Fix requires().")  # fmt: skip
    for task in walked.order:
        bad = [d for d in walked.deps[id(task)] if not isinstance(d, luigi.Task)]
        if bad:
            problems.append(f"{type(task).__name__}({task.task_id}): requires() returned {type(bad[0]).__name__}, "
                            "not a task. requires() must return tasks (or lists/dicts of tasks).")  # fmt: skip
    if problems:
        raise PlanError(problems)
    order, deps_of = walked.order, walked.deps

    ids: dict[int, str] = {}
    for task in order:
        try:
            ids[id(task)] = unique_id(task)
        except Exception as e:
            problems.append(f"{type(task).__name__}({task.task_id}): computing its unique id raised "
                            f"{type(e).__name__}: {e}")  # fmt: skip
    if problems:
        raise PlanError(problems)

    # 2. From the root, check complete() once per task, level by level (in parallel: on S3/GCS each check is a
    #    network round trip), and never look below a complete task.
    plan = Plan(root_id=ids[id(roots[0])])
    frontier = list({ids[id(r)]: r for r in roots}.values())
    queued = {ids[id(r)] for r in roots}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=complete_check_threads, thread_name_prefix="kannon-plan")
    try:
        while frontier:
            results = list(pool.map(_complete_or_error, frontier)) if len(frontier) > 1 else [
                _complete_or_error(frontier[0])]  # fmt: skip
            nxt: list[luigi.Task] = []
            for task, (complete, complete_error) in zip(frontier, results, strict=True):
                uid = ids[id(task)]
                if complete_error is not None:
                    problems.append(f"{describe_safe(task)}: complete() raised {complete_error}. Check the "
                                    "workspace and credentials for its output.")  # fmt: skip
                    complete = False
                deps = [] if complete else deps_of[id(task)]
                placement = Placement.COMPLETE if complete else (
                    Placement.BULLET if isinstance(task, TaskOnBullet) else Placement.MASTER)  # fmt: skip
                plan.nodes[uid] = Node(
                    task_id=uid, task=task, family=type(task).__name__, params=short_params(task),
                    placement=placement, deps=tuple(dict.fromkeys(ids[id(d)] for d in deps)),
                )  # fmt: skip
                for d in deps:
                    if ids[id(d)] not in queued:
                        queued.add(ids[id(d)])
                        nxt.append(d)
            frontier = nxt
    finally:
        pool.shutdown(wait=True)  # no lingering threads: the local backend may fork right after planning

    # 3. Validate what can be validated before launching: hints, and that each bullet survives the hand-off.
    encoder = Encoder()
    encoded: list[Node] = []
    in_memory: dict[str, bool] = {}  # task id -> has an InMemoryTarget output: one output() call per task
    for node in plan.nodes.values():
        if node.placement is not Placement.BULLET:
            continue
        task = node.task
        assert isinstance(task, TaskOnBullet)
        try:
            hints = task.bullet_hints()
            errs = hints.errors()
        except Exception as e:
            errs = [f"bullet_hints() raised {type(e).__name__}: {e}"]
            hints = Hints()
        if not errs and validate_hints is not None:
            errs = validate_hints(node.family, hints)
        problems.extend(f"{describe(task)}: {err}. Fix its kannon_hints / with_hints()." for err in errs)
        node.hints = hints
        problems.extend(_in_memory_problems(node, plan, in_memory))
        if verify_handoff:
            try:
                encoder.encode(task)  # every node of its parameter closure, value round trips checked
            except HandoffError as e:
                problems.extend(e.problems)
                continue
            encoded.append(node)
    problems.extend(verify_round_trips(_representatives(encoded), encoder))
    if problems:
        raise PlanError(list(dict.fromkeys(problems)))
    return plan


def _in_memory_targets(task: luigi.Task) -> list[str]:
    import gokart

    if isinstance(task, gokart.TaskOnKart) and type(task).output is gokart.TaskOnKart.output:
        return []  # gokart's default output() is a file target; calling it costs ~1 ms per task on large plans
    try:
        from gokart.in_memory.target import InMemoryTarget
    except ImportError:  # a gokart without in-memory targets
        return []
    try:
        outputs = flatten(task.output())
    except Exception:
        return []  # output() errors are reported where the output is needed
    return [type(t).__name__ for t in outputs if isinstance(t, InMemoryTarget)]


def _in_memory_problems(node: Node, plan: Plan, memo: dict[str, bool]) -> list[str]:
    """gokart's InMemoryTarget lives in one process's memory: a bullet's child can neither publish one to the
    master nor read one the master holds."""

    def in_memory(n: Node) -> bool:
        if n.task_id not in memo:
            memo[n.task_id] = bool(_in_memory_targets(n.task))
        return memo[n.task_id]

    out = []
    if in_memory(node):
        out.append(f"{describe_safe(node.task)}: its output() is a gokart InMemoryTarget, which lives only in the "
                   "process that writes it, and a bullet runs in its own process. Make it a TaskOnKart (not a "
                   "TaskOnBullet), or give it a file target (self.make_target).")  # fmt: skip
    for dep_id in node.deps:
        dep = plan.nodes[dep_id].task
        if in_memory(plan.nodes[dep_id]):
            out.append(f"{describe_safe(node.task)} consumes {describe_safe(dep)}, whose output() is a gokart "
                       "InMemoryTarget, which lives only in the master's memory and a bullet runs in its own "
                       "process. Give that task a file target (self.make_target), or make the consumer a TaskOnKart "
                       "(not a TaskOnBullet).")  # fmt: skip
    return out


def _representatives(nodes: list[Node]) -> list[luigi.Task]:
    """One bullet per class for the full rebuild check, which catches code and import-order drift.

    A rebuild computes the unique ids of the task's whole requires() tree (as every child does), so take the
    instance with the least upstream: discovery runs from the root, so the last one found of a class is nearest the
    leaves. Prefer one that has requirements, so that its requires() runs too."""
    with_deps: dict[type, luigi.Task] = {}
    without: dict[type, luigi.Task] = {}
    for node in reversed(nodes):
        (with_deps if node.deps else without).setdefault(type(node.task), node.task)
    classes = dict.fromkeys(type(n.task) for n in nodes)
    return [with_deps[cls] if cls in with_deps else without[cls] for cls in classes]


#: (module, sys_path) pairs a fresh interpreter imported: modules do not become unimportable during a session
_IMPORTABLE: set[tuple[str, tuple[str, ...]]] = set()

IMPORT_PROBE = """
import importlib, json, sys
paths, modules = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for p in reversed(paths):
    if p not in sys.path:
        sys.path.insert(0, p)
failed = {}
for m in modules:
    try:
        importlib.import_module(m)
    except BaseException as e:
        failed[m] = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
print(json.dumps(failed))
"""


def spawned_import_failures(
    modules: Sequence[str], sys_path: Sequence[str] = (), env: Mapping[str, str] | None = None, timeout: float = 300.0
) -> dict[str, str]:
    """Import ``modules`` in a fresh interpreter started as a spawn-mode local child is (this interpreter, the
    master's cwd and environment, ``sys_path`` first): {module: error} for those that fail."""
    modules = [m for m in modules if (m, tuple(sys_path)) not in _IMPORTABLE]
    if not modules:
        return {}
    proc = subprocess.run(  # an argv list of our own, no shell
        [sys.executable, "-c", IMPORT_PROBE, json.dumps(list(sys_path)), json.dumps(list(modules))],
        capture_output=True, text=True, timeout=timeout, env=dict(os.environ if env is None else env),
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        failed = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return dict.fromkeys(modules, f"the import check itself failed (exit {proc.returncode}): {tail}")
    _IMPORTABLE.update((m, tuple(sys_path)) for m in modules if m not in failed)
    return {str(k): str(v) for k, v in failed.items()}


def bullet_import_problems(plan: Plan, sys_path: Sequence[str] = (), env: Mapping[str, str] | None = None) -> list[str]:
    """Plan-time check for spawned children: kept for existing callers; the check lives in kannon.importcheck,
    which Kannon.build runs for every backend."""
    from kannon import importcheck  # imports this module

    return importcheck.spawned_problems(plan, sys_path, env)


def _complete_or_error(task: luigi.Task) -> tuple[bool, str | None]:
    try:
        return bool(task.complete()), None
    except Exception as e:
        return False, f"{type(e).__name__}: {e}"


def describe_safe(task: luigi.Task) -> str:
    try:
        return describe(task)
    except Exception:
        return f"{type(task).__name__}({task.task_id})"


__all__ = ["Node", "Plan", "PlanError", "bullet_import_problems", "make_plan", "plan_requested",
           "spawned_import_failures"]  # fmt: skip
