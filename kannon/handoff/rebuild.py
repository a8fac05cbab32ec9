"""Rebuilding a spec's tasks and proving them the master's: every unique id and constructor value, and what the
target's requires() returns. The child does this before running anything; the master does it to a plan's specs
first (``verify_round_trip``) so a task that cannot be handed off fails the plan, not a bullet."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import luigi
from luigi.task import flatten

from kannon.handoff.spec import IdMismatchError, SpecError
from kannon.handoff.tasks import _params_of, constructor_value, describe, is_public, unique_id
from kannon.handoff_values import HandoffError, from_json, to_json
from kannon.instcache import fresh_instances

if TYPE_CHECKING:
    from kannon.handoff.encode import Encoder


def _resolve_class(module: str, qualname: str) -> type:
    obj: Any = sys.modules[module]
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, luigi.Task)):
        raise SpecError(f"{module}.{qualname} is not a luigi/gokart task class; refusing to call it")
    return obj


def rebuild(doc: Mapping[str, Any], verify: bool = True) -> dict[str, luigi.Task]:
    """Rebuild every node of a parsed spec (modules must be imported); verify each unique id."""
    nodes: Mapping[str, Any] = doc["nodes"]
    built: dict[str, luigi.Task] = {}

    order: list[str] = []
    state: dict[str, int] = {}
    for start in nodes:
        stack = [(start, False)]
        while stack:
            uid, done = stack.pop()
            if done:
                if state.get(uid) != 2:
                    state[uid] = 2
                    order.append(uid)
                continue
            if state.get(uid):
                if state[uid] == 1 and uid != start and (uid, True) not in stack:
                    raise SpecError(f"node {uid} references itself through its parameters")
                continue
            state[uid] = 1
            stack.append((uid, True))
            for p in nodes[uid]["params"].values():
                refs = [p["task"]] if "task" in p else p.get("tasks", [])
                stack.extend((r, False) for r in refs if state.get(r) != 2)

    warmed: dict[int, luigi.Task] = {}  # tasks whose unique id is computed, shared by every node's check
    for uid in order:  # dependencies (by parameter) first
        node = nodes[uid]
        cls = _resolve_class(node["module"], node["class"])
        declared = dict(_params_of(cls))
        kwargs: dict[str, Any] = {}
        for name, p in node["params"].items():
            if name not in declared:
                raise IdMismatchError(
                    f"{cls.__name__}: the master passed parameter {name!r}, which this code's {cls.__name__} does not "
                    "declare — the child runs different code than the master (rebuild the image / sync the code)."
                )
            if "task" in p:
                kwargs[name] = built[p["task"]]
            elif "tasks" in p:
                kwargs[name] = [built[t] for t in p["tasks"]]
            elif "j" in p:
                try:
                    kwargs[name] = from_json(p["j"])
                except (ValueError, TypeError, AttributeError) as e:
                    raise SpecError(f"node {uid}: parameter {name!r}: malformed typed JSON ({e})") from e
            else:
                kwargs[name] = declared[name].parse(p["v"])
        task = cls(**kwargs)
        if verify:
            _warm_unique_ids(task, warmed)
            actual = unique_id(task)
            if actual != uid:
                raise IdMismatchError(
                    f"{cls.__name__} rebuilt with unique id {actual}, but the master computed {uid}. Likely causes: "
                    "the child runs different code or package versions than the master (rebuild/sync the image); "
                    "luigi config differs between them; a parameter or requires() is not deterministic (reads the "
                    "clock, environment, random numbers, or an object whose str() contains a memory address); "
                    "parameter definition order differs (mixins imported in a different order)."
                )
            check_constructed(task, uid, node["params"], declared)
        built[uid] = task
    return built


def check_constructed(task: luigi.Task, uid: str, params: Mapping[str, Any],
                      declared: Mapping[str, luigi.Parameter]) -> None:  # fmt: skip
    """The rebuilt task must have been constructed with exactly the master's values, insignificant ones included
    (they decide where it reads and writes): luigi's instance cache, which keys on the values a caller passes,
    hands out an existing object built with other values (e.g. at import time, from another config)."""
    name_of = f"{type(task).__name__} [{uid}]"
    for name in declared:
        if name not in params:
            raise IdMismatchError(
                f"{name_of}: the child's code declares parameter {name!r}, which the master's task does not have — "
                "the child runs different code than the master (rebuild the image / sync the code)."
            )
    for name, p in params.items():
        diff = _shown(_difference(task, name, p, declared[name]), declared[name])
        if diff is not None:
            raise IdMismatchError(
                f"{name_of}: parameter {name} is {diff[0][:120]!r} in the rebuilt task but {diff[1][:120]!r} in the "
                "master's: the child would not run the task the master planned (read or write elsewhere). "
                "A task object the module builds at import time, or config that differs between master and child, "
                "can cause this."
            )


def check_requirements(task: luigi.Task, expected: Mapping[str, Any]) -> None:
    """What ``task.requires()`` returns in the child must have the constructor values the master's requires()
    returned (``expected``: the spec's ``requires``), so the child reads its inputs where the master wrote them."""
    for dep in flatten(task.requires()):
        if not isinstance(dep, luigi.Task):
            continue
        uid = unique_id(dep)
        node = expected.get(uid)
        if node is None:
            continue  # not known to the master by this id: the unique id checks speak for that
        declared = dict(_params_of(type(dep)))
        for name, p in node["params"].items():
            diff = _shown(_difference(dep, name, p, declared[name]), declared[name]) if name in declared else None
            if diff is not None:
                raise IdMismatchError(
                    f"{type(dep).__name__} [{uid}], which {type(task).__name__} requires: parameter {name} is "
                    f"{diff[0][:120]!r} in the child but {diff[1][:120]!r} in the master, so the child would read "
                    "its input elsewhere. The master's object was probably built before its config changed (e.g. "
                    "when the module was imported; luigi's instance cache then returns it). Configure before "
                    "importing the pipeline module, or pass the value explicitly."
                )


def _shown(diff: tuple[str, str] | None, param: luigi.Parameter) -> tuple[str, str] | None:
    """A difference as it may be printed: a PRIVATE or HIDDEN parameter's values are not."""
    return diff if diff is None or is_public(param) else ("<private>", "<private>")


def _difference(task: luigi.Task, name: str, p: Mapping[str, Any],
                param: luigi.Parameter) -> tuple[str, str] | None:  # fmt: skip
    """(child's text, master's text) if ``task``'s constructor value for ``name`` differs from the spec's ``p``."""
    actual = constructor_value(task, name)
    if "task" in p or "tasks" in p:
        want = [p["task"]] if "task" in p else list(p["tasks"])
        got = [actual] if isinstance(actual, luigi.Task) else list(actual or ())
        ok = len(got) == len(want) and all(isinstance(t, luigi.Task) and unique_id(t) == w
                                           for t, w in zip(got, want, strict=True))  # fmt: skip
        shown, expected = f"[{', '.join(unique_id(t) for t in got if isinstance(t, luigi.Task))}]", str(want)
    elif "j" in p:
        try:
            shown = json.dumps(to_json(actual))
        except TypeError:
            shown = repr(actual)
        expected = json.dumps(p["j"])
        ok = shown == expected
    else:
        try:
            shown = param.serialize(actual)
        except Exception:
            shown = repr(actual)
        expected = p["v"]
        ok = shown == expected
    return None if ok else (shown, expected)


def _warm_unique_ids(root: luigi.Task, warmed: dict[int, luigi.Task]) -> None:
    """Compute unique ids leaves-first (gokart caches them on the instance), so computing the next one recurses
    one level only: deep requires() chains would exceed the recursion limit otherwise. ``warmed`` (id -> task,
    which keeps the object alive) is shared across calls, so tasks shared between nodes are visited once."""
    stack: list[tuple[luigi.Task, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        task, expanded = stack.pop()
        key = id(task)
        if expanded:
            on_path.discard(key)
            unique_id(task)
            warmed[key] = task
            continue
        if key in warmed:
            continue
        if key in on_path:  # an unexpanded entry of a task on the current path comes from its own subtree
            raise SpecError(f"{type(task).__name__}({task.task_id}): requires() forms a cycle")
        on_path.add(key)
        stack.append((task, True))
        stack.extend((d, False) for d in flatten(task.requires()) if isinstance(d, luigi.Task) and id(d) not in warmed)


def verify_round_trip(task: luigi.Task, encoder: Encoder, run_id: str = "plan-check") -> None:
    """Master side: the task's spec must rebuild to the same unique ids in this process."""
    doc = json.loads(encoder.spec(task, run_id, {}).decode("utf-8"))
    with fresh_instances():
        try:
            rebuild(doc)
        except IdMismatchError as e:
            raise HandoffError(f"{describe(task)} cannot be handed off: {e}") from e
        except HandoffError:
            raise
        except Exception as e:
            raise HandoffError(
                f"{describe(task)} cannot be rebuilt from its parameters ({type(e).__name__}: {e}). "
                "Every parameter must be reconstructible from its serialized text."
            ) from e


def verify_round_trips(tasks: Sequence[luigi.Task], encoder: Encoder) -> list[str]:
    """``verify_round_trip`` for several tasks; returns one problem per task that fails.

    The common case costs one rebuild of the union of their specs, so the nodes they share (their common upstream)
    are rebuilt and checked once; only if that fails is each task checked alone, which names the culprits."""
    if len(tasks) > 1:
        ids = [encoder.encode(task) for task in tasks]
        union: dict[str, None] = {}
        for uid in ids:
            union.update(dict.fromkeys(encoder.closure(uid)))
        # through JSON text, exactly as a child receives it
        doc = {"target": ids[0], "nodes": json.loads(json.dumps({n: encoder.nodes[n] for n in union}))}
        try:
            with fresh_instances():
                rebuild(doc)
            return []
        except Exception:  # noqa: S110 - the checks below are the authority and say what is wrong
            pass
    problems = []
    for task in tasks:
        try:
            verify_round_trip(task, encoder)
        except HandoffError as e:
            problems.append(str(e))
    return problems
