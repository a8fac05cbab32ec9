"""The spec document itself: its version, the child's command line that points at it, and the child's first
steps with it (hash check, structural validation, importing the modules it names), none of which runs task code
before the hash is checked."""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import sys
from collections.abc import Mapping
from typing import Any

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
