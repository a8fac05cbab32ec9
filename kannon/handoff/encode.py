"""Master side: tasks encoded as spec nodes, and the spec document that hands one task and its upstream to a child."""

from __future__ import annotations

import json
import os
import sys
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import luigi
from luigi.task import flatten

from kannon.handoff.spec import SPEC_VERSION
from kannon.handoff.tasks import _params_of, _task_list, constructor_value, describe, unique_id
from kannon.handoff_values import HandoffError, Parsed, encode_value


class Encoder:
    """Encodes tasks into spec nodes, memoised per unique id (one encoder per build)."""

    def __init__(self, verify_values: bool = True) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: dict[str, tuple[str, ...]] = {}  # node -> task-valued parameter references
        self._referenced: set[str] = set()  # nodes some node's edges name: kept by release()
        self.verify_values = verify_values
        # (id(param), text) -> (param, parsed value, encoded value): most tasks share most parameter texts (every
        # TaskOnKart setting, typically), and parse() is a function of the text (handoff_values.encode_value).
        self._parsed: Parsed = OrderedDict()

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
            self._referenced.update(self.edges[uid])
        if problems:
            raise HandoffError(*problems)
        return unique_id(task)

    def release(self, uid: str) -> None:
        """Forget ``uid``'s node (its spec is written) unless another node's parameter is that task: a build's
        encoder otherwise holds a node per task to the end (0.5 KB each); encoding it again gives the same node."""
        if uid not in self._referenced:
            self.nodes.pop(uid, None)
            self.edges.pop(uid, None)

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
