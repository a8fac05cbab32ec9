"""The hand-off: a task graph as JSON (master side) and its verified rebuild (child side). No pickle.

A spec is one JSON document::

    {"kannon_spec": 1, "target": "<unique id>", "run_id": ..., "sys_path": [...],
     "config": {"section": {"key": "raw value"}},
     "nodes": {"<unique id>": {"module": "pkg.mod", "class": "Qual.Name",
                               "params": {"name": {"v": "text"} | {"j": <typed JSON>} | {"task": "<id>"}
                                                   | {"tasks": ["<id>", ...]}}}},
     "requires": {"<unique id>": {"params": {...}}}}   # what the target's requires() returned in the master

Every parameter (insignificant and private ones included) is taken from ``param_kwargs`` (what the task was
constructed with: luigi hashes those, and ``__init__`` may rebind the attribute), written with the parameter's own
``serialize`` and read back with its own ``parse``. A value that text cannot reproduce exactly (an int in an untyped
parameter, ``FloatParameter`` given ``1``, int dict keys, None) travels as typed JSON (``handoff_values.to_json``)
when it is made of JSON-native values. Task-valued parameters are references to other nodes, so a spec grows
linearly with the upstream closure even on DAGs with shared ancestors. The child is told the spec's location, the
expected unique id and the spec's sha256 (``child_args``, the only place the child command is built); it checks the hash
before importing anything, then every rebuilt node's unique id and constructor values, and that the target's
requires() returns tasks constructed with the master's values (``check_requirements``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import gokart
import luigi
from luigi import task_register
from luigi.parameter import ParameterVisibility
from luigi.task import flatten

from kannon.handoff_values import HandoffError as HandoffError  # re-exported: part of this module's interface
from kannon.handoff_values import encode_value, from_json, to_json

SPEC_VERSION = 1
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_QUALNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_UNIQUE_ID = re.compile(r"^[0-9A-Za-z_.-]{1,200}$")


class SpecError(Exception):
    """A spec is unreadable, altered or malformed (child side)."""


class IdMismatchError(Exception):
    """A rebuilt task's unique id differs from the one the master computed."""


def child_args(location: str, task_id: str, sha256: str) -> tuple[str, ...]:
    """The child command after ``python -m kannon`` — built here and nowhere else."""
    return ("run-task", "--spec", location, "--task-id", task_id, "--sha256", sha256)


def unique_id(task: luigi.Task) -> str:
    if isinstance(task, gokart.TaskOnKart):
        return str(task.make_unique_id())
    return str(task.task_id)


def describe(task: luigi.Task) -> str:
    return f"{type(task).__name__}({short_params(task)}) [{unique_id(task)}]"


def constructor_value(task: luigi.Task, name: str) -> Any:
    """The value ``task`` was constructed with (luigi's ``param_kwargs``), which is what its id is made of; the
    attribute may have been rebound by ``__init__``."""
    kwargs = getattr(task, "param_kwargs", None)
    if isinstance(kwargs, dict) and name in kwargs:
        return kwargs[name]
    return getattr(task, name, None)


def is_public(param: luigi.Parameter) -> bool:
    """luigi's own rule (``to_str_params(only_public=True)``): PRIVATE and HIDDEN values are never shown."""
    return bool(getattr(param, "visibility", ParameterVisibility.PUBLIC) == ParameterVisibility.PUBLIC)


def short_params(task: luigi.Task, limit: int = 80) -> str:
    """What kannon shows of a task's parameters everywhere (console, errors, events, report, plan view)."""
    parts = []
    for name, param in _params_of(type(task)):
        if not param.significant or not is_public(param):
            continue
        value = constructor_value(task, name)
        if isinstance(value, luigi.Task):
            text = f"{type(value).__name__}(…)"
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, luigi.Task) for v in value):
            text = f"[{len(value)} tasks]"
        else:
            try:
                text = param.serialize(value)
            except Exception:
                text = repr(value)
            if len(text) > 30:
                text = text[:27] + "…"
        parts.append(f"{name}={text}")
    out = ", ".join(parts)
    return out if len(out) <= limit else out[: limit - 1] + "…"


_PARAMS_CACHE: dict[type, list[tuple[str, luigi.Parameter]]] = {}


def _params_of(cls: type) -> list[tuple[str, luigi.Parameter]]:
    # luigi's get_params() scans dir(cls) on every call; a plan calls it once per node.
    params = _PARAMS_CACHE.get(cls)
    if params is None:
        params = _PARAMS_CACHE[cls] = list(cls.get_params())  # type: ignore[attr-defined]
    return params


def _task_list(value: Any) -> list[luigi.Task] | None:
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, luigi.Task) for v in value):
        return list(value)
    return None


class Encoder:
    """Encodes tasks into spec nodes, memoised per unique id (one encoder per build)."""

    def __init__(self, verify_values: bool = True) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: dict[str, tuple[str, ...]] = {}  # node -> task-valued parameter references
        self.verify_values = verify_values
        # (id(param), text) -> (param, parsed value): most tasks share most parameter texts (every TaskOnKart
        # setting, typically), and parse() is a function of the text.
        self._parsed: dict[tuple[int, str], tuple[luigi.Parameter, Any]] = {}

    def encode(self, task: luigi.Task) -> str:
        """Encode ``task`` and everything reachable through its task-valued parameters; returns its id.

        Raises HandoffError listing every parameter of every node that cannot be handed off."""
        problems: list[str] = []
        stack: list[tuple[luigi.Task, list[luigi.Task] | None]] = [(task, None)]
        failed: set[str] = set()
        while stack:
            current, refs = stack.pop()
            uid = unique_id(current)
            if uid in self.nodes or uid in failed:
                continue
            if refs is None:  # first visit: encode what it references first
                refs = self._task_refs(current)
                stack.append((current, refs))
                stack.extend((t, None) for t in refs if unique_id(t) not in self.nodes)
                continue
            node, node_problems = self._encode_one(current)
            if node_problems:
                failed.add(uid)
                problems.extend(node_problems)
                continue
            self.nodes[uid] = node
            self.edges[uid] = tuple(unique_id(t) for t in refs)
        if problems:
            raise HandoffError(*problems)
        return unique_id(task)

    def closure(self, uid: str) -> list[str]:
        seen: dict[str, None] = {}
        stack = [uid]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen[n] = None
            stack.extend(self.edges[n])
        return list(seen)

    def spec(self, task: luigi.Task, run_id: str, config: Mapping[str, Mapping[str, str]],
             sys_path: Sequence[str] = (), code: Mapping[str, Any] | None = None,
             code_root: str | None = None) -> bytes:  # fmt: skip
        """``code`` (ship.spec_entry) goes inside the hashed spec, so the child trusts the archive's sha256 because
        it verified the spec's; ``code_root`` and paths under it leave ``sys_path`` (the child imports that code from
        the archive, never from a copy of its own that import_modules would put first)."""
        uid = self.encode(task)
        nodes = {n: self.nodes[n] for n in self.closure(uid)}
        # what the caller passed, plus where the master imported the nodes' modules from (a sys.path edit in the
        # master's script is invisible to a spawned child otherwise)
        paths = list(dict.fromkeys([*sys_path, *import_roots(n["module"] for n in nodes.values())]))
        if code_root is not None:
            root = os.path.abspath(code_root)
            paths = [p for p in paths if not (os.path.abspath(p) + os.sep).startswith(root + os.sep)]
        doc = {
            "kannon_spec": SPEC_VERSION,
            "target": uid,
            "run_id": run_id,
            "sys_path": paths,
            "config": config,
            "nodes": nodes,
            "requires": self.requirements(task),
        }
        if code is not None:  # absent otherwise: specs of runs without shipping stay byte-identical
            doc["code"] = dict(code)
        return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def requirements(self, task: luigi.Task) -> dict[str, dict[str, Any]]:
        """What the master's ``task.requires()`` returned, with the values each was constructed with (those that
        can be written; the child compares them, it never builds these)."""
        out: dict[str, dict[str, Any]] = {}
        for dep in flatten(task.requires()):
            if not isinstance(dep, luigi.Task) or unique_id(dep) in out:
                continue
            params: dict[str, Any] = {}
            for name, param in _params_of(type(dep)):
                value = constructor_value(dep, name)
                if isinstance(value, luigi.Task):
                    params[name] = {"task": unique_id(value)}
                elif _task_list(value) is not None:
                    params[name] = {"tasks": [unique_id(t) for t in _task_list(value) or ()]}
                else:
                    try:
                        params[name] = encode_value("", name, param, value, self._parsed)
                    except HandoffError:
                        continue  # a master-only upstream may hold values no spec can carry: not compared
            out[unique_id(dep)] = {"params": params}
        return out

    @staticmethod
    def _task_refs(task: luigi.Task) -> list[luigi.Task]:
        refs: list[luigi.Task] = []
        for name, _ in _params_of(type(task)):
            value = constructor_value(task, name)
            if isinstance(value, luigi.Task):
                refs.append(value)
            else:
                refs.extend(_task_list(value) or [])
        return refs

    def _encode_one(self, task: luigi.Task) -> tuple[dict[str, Any], list[str]]:
        cls = type(task)
        where = describe(task)
        if cls.__module__ == "__main__":
            return {}, [
                f"{where}: class {cls.__name__} is defined in __main__ (the script being run), which a child cannot "
                "import. Move the task classes into a module and import them, or run the file with "
                "`kannon build path/to/file.py:root`, which imports it as a module."
            ]
        if "<locals>" in cls.__qualname__:
            return {}, [
                f"{where}: class {cls.__qualname__} is defined inside a function; a child can only import "
                "module-level classes. Move it to module level."
            ]
        params: dict[str, Any] = {}
        problems: list[str] = []
        for name, param in _params_of(cls):
            value = constructor_value(task, name)
            if isinstance(value, luigi.Task):
                params[name] = {"task": unique_id(value)}
                continue
            tasks = _task_list(value)
            if tasks is not None:
                params[name] = {"tasks": [unique_id(t) for t in tasks]}
                continue
            try:
                params[name] = encode_value(where, name, param, value, self._parsed)
            except HandoffError as e:
                problems.extend(e.problems)
        return {"module": cls.__module__, "class": cls.__qualname__, "params": params}, problems

def import_roots(modules: Iterable[str]) -> list[str]:
    """The master's sys.path entries the given modules were imported from, site-packages and stdlib aside."""
    on_path = {os.path.abspath(p or os.curdir) for p in sys.path}
    system = tuple(os.path.abspath(p) + os.sep for p in {sys.prefix, sys.base_prefix, sys.exec_prefix})
    roots: dict[str, None] = {}
    for name in dict.fromkeys(modules):
        file = getattr(sys.modules.get(name), "__file__", None)
        if not file:
            continue
        root = os.path.dirname(os.path.abspath(file))
        for _ in range(name.count(".") + (os.path.basename(file) == "__init__.py")):
            root = os.path.dirname(root)
        if root in on_path and not (root + os.sep).startswith(system):
            roots[root] = None
    return list(roots)


# ---------------------------------------------------------------------------------------------------------------
# child side


def verify_hash(data: bytes, sha256: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256.lower():
        raise SpecError(
            f"the spec's sha256 is {actual}, not {sha256}: it was altered or replaced after the master wrote it; "
            "refusing to import anything it names"
        )


def parse_spec(data: bytes) -> dict[str, Any]:
    """Parse and structurally validate a spec, importing nothing."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SpecError(f"the spec is not valid JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("kannon_spec") != SPEC_VERSION:
        raise SpecError(f"not a kannon spec of version {SPEC_VERSION} (was it written by another kannon version?)")
    try:
        from kannon import ship_child  # standard library and kannon.storage only

        ship_child.code_ref(doc)
    except ship_child.ShipError as e:
        raise SpecError(str(e)) from e
    nodes = doc.get("nodes")
    if not isinstance(nodes, dict) or doc.get("target") not in nodes:
        raise SpecError("the spec has no nodes or its target is not among them")
    for uid, node in nodes.items():
        if not isinstance(uid, str) or not _UNIQUE_ID.match(uid) or not isinstance(node, dict):
            raise SpecError(f"malformed node {uid!r}")
        module, qualname, params = node.get("module"), node.get("class"), node.get("params")
        if not isinstance(module, str) or not _MODULE_NAME.match(module):
            raise SpecError(f"node {uid}: {module!r} is not a module name")
        if not isinstance(qualname, str) or not _QUALNAME.match(qualname):
            raise SpecError(f"node {uid}: {qualname!r} is not a class name")
        if not isinstance(params, dict):
            raise SpecError(f"node {uid}: params must be an object")
        for pname, pval in params.items():
            ok = isinstance(pval, dict) and len(pval) == 1 and (
                isinstance(pval.get("v"), str)
                or "j" in pval
                or pval.get("task") in nodes
                or (isinstance(pval.get("tasks"), list) and all(t in nodes for t in pval["tasks"]))
            )
            if not isinstance(pname, str) or not ok:
                raise SpecError(f"node {uid}: malformed parameter {pname!r}")
    requires = doc.get("requires", {})
    if not isinstance(requires, dict) or not all(
        isinstance(uid, str) and isinstance(n, dict) and isinstance(n.get("params"), dict)
        and all(isinstance(p, dict) and len(p) == 1 and next(iter(p)) in ("v", "j", "task", "tasks")
                for p in n["params"].values())
        for uid, n in requires.items()
    ):  # fmt: skip
        raise SpecError("the spec's requires must map unique ids to {'params': {...}}")
    config = doc.get("config", {})
    if not isinstance(config, dict) or not all(
        isinstance(s, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in s.items())
        for s in config.values()
    ):
        raise SpecError("the spec's config must map sections to string options")
    if not isinstance(doc.get("sys_path", []), list) or not all(isinstance(p, str) for p in doc.get("sys_path", [])):
        raise SpecError("the spec's sys_path must be a list of strings")
    return doc


def import_modules(doc: Mapping[str, Any]) -> None:
    for p in reversed(doc.get("sys_path", [])):
        if p not in sys.path:
            sys.path.insert(0, p)
    for module in sorted({n["module"] for n in doc["nodes"].values()}):
        importlib.import_module(module)


def _resolve_class(module: str, qualname: str) -> type:
    obj: Any = sys.modules[module]
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, luigi.Task)):
        raise SpecError(f"{module}.{qualname} is not a luigi/gokart task class; refusing to call it")
    return obj


@contextmanager
def fresh_instances() -> Iterator[None]:
    """Construct tasks in a new, empty luigi instance cache, so a rebuild cannot return the master's own objects
    (luigi's cache ignores insignificant parameters), while requires() inside the rebuild still shares instances."""
    saved = task_register.Register._Register__instance_cache
    task_register.Register._Register__instance_cache = {}
    try:
        yield
    finally:
        task_register.Register._Register__instance_cache = saved


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


def luigi_config_snapshot() -> dict[str, dict[str, str]]:
    """The master's effective luigi config as raw text, so ``${ENV}`` references are resolved in the child."""
    cfg = luigi.configuration.get_config()
    out: dict[str, dict[str, str]] = {}
    if hasattr(cfg, "sections") and hasattr(cfg, "items"):
        for section in cfg.sections():
            try:
                items = cfg.items(section, raw=True)
            except TypeError:  # a parser without raw= (e.g. toml); values are already plain
                items = cfg.items(section)
            out[section] = {str(k): str(v) for k, v in items}
    return out


#: luigi's and gokart's own sections a child may read whatever its tasks are; gokart imports some of their Config
#: classes lazily (S3Config when an s3:// target is first made), so the master's registry may not know them yet
CHILD_SECTIONS = frozenset({"core", "worker", "TaskOnKart", "gokart_worker", "S3Config", "GCSConfig", "SlackConfig",
                            "PandasTypeConfigMap"})  # fmt: skip


def config_for_child(config: Mapping[str, Mapping[str, str]], task_classes: Iterable[type],
                     extra: Iterable[str] = ()) -> dict[str, dict[str, str]]:  # fmt: skip
    """The sections of ``config`` a child needs (docs/design.md, "What a spec carries"): those named after a task
    family of the plan or one of its base classes (luigi reads a parameter's default from its class's section,
    gokart reads ``[TaskOnKart]``), after any ``luigi.Config`` class the master imported (a task's run() may read
    one: gokart's S3Config/GCSConfig, luigi's core/worker, the user's own), and the ones named in ``extra``
    (``Kannon(config_sections=...)`` / ``--config-section``). Any other section (credentials for the master's
    own use, say) stays out of the spec."""
    wanted = set(CHILD_SECTIONS) | set(extra)
    for cls in task_classes:
        wanted.update(str(base.get_task_family()) for base in cls.__mro__
                      if isinstance(base, task_register.Register))  # fmt: skip
    configs: list[Any] = [c for c in list(task_register.Register._reg)
                          if isinstance(c, type) and issubclass(c, luigi.Config)]  # fmt: skip
    wanted.update(str(c.get_task_family()) for c in configs)
    return {name: dict(options) for name, options in config.items() if name in wanted}


def apply_config(config: Mapping[str, Mapping[str, str]]) -> None:
    cfg = luigi.configuration.get_config()
    for section, options in config.items():
        if not cfg.has_section(section):
            cfg.add_section(section)
        for key, value in options.items():
            cfg.set(section, key, value)
