"""Render a plan (what ``kannon plan TARGET`` shows) as text, Graphviz dot, Mermaid or JSON.

Written against a small Protocol rather than ``kannon.plan.Plan`` itself so the views stay independent of the
planner's internals: anything with ``root_id`` and ``nodes`` (task id -> node with ``task_id``, ``family``,
``params``, ``placement``, ``deps``) can be rendered.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any, Literal, Protocol

PlanFormat = Literal["text", "dot", "mermaid", "json"]
FORMATS: tuple[PlanFormat, ...] = ("text", "dot", "mermaid", "json")
PLAN_JSON_SCHEMA = 1

# Colours shared by dot and mermaid so both views read the same way.
_FILL = {"bullet": "#cfe2ff", "master": "#fff3cd", "complete": "#e2e3e5"}
_STROKE = {"bullet": "#0a58ca", "master": "#997404", "complete": "#6c757d"}


class PlanNodeLike(Protocol):
    @property
    def task_id(self) -> str: ...
    @property
    def family(self) -> str: ...
    @property
    def params(self) -> str: ...
    @property
    def placement(self) -> Any: ...  # kannon.result.Placement or its string value
    @property
    def deps(self) -> tuple[str, ...]: ...


class PlanLike(Protocol):
    @property
    def root_id(self) -> str: ...
    @property
    def nodes(self) -> Mapping[str, PlanNodeLike]: ...


def placement_name(node: PlanNodeLike) -> str:
    p = node.placement
    return str(p.value) if isinstance(p, enum.Enum) else str(p)


def short_id(task_id: str) -> str:
    return task_id[:8]


def one_line(s: str) -> str:
    """Control characters and line separators (also U+2028, form feed, ...) as spaces: one task, one line."""
    return "".join(c if c.isprintable() else " " for c in s)


def label(node: PlanNodeLike) -> str:
    return one_line(f"{node.family}({node.params})" if node.params else node.family)


def hints_text(node: PlanNodeLike, origins: Mapping[str, str] | None = None) -> str:
    """A bullet's hints that are set, e.g. ``memory=256Mi cpu=1 timeout=600s``; env values are never shown.

    With ``origins`` (hint key -> file / instance / class / default, see kannon.hintsfile.origins) each value says
    where it came from, ``memory=384Mi(file)``, and unset cpu and memory show as ``cpu=(default)``."""
    hints = getattr(node, "hints", None)
    if hints is None and origins is None:
        return ""
    parts = []
    for name in ("cpu", "memory", "gpu", "image", "retries", "timeout"):
        value = getattr(hints, name, None)
        if value is not None:
            text = f"{name}={value:g}s" if name == "timeout" else f"{name}={value}"
            parts.append(text + (f"({origins.get(name, '?')})" if origins is not None else ""))
        elif origins is not None and name in ("cpu", "memory"):
            parts.append(f"{name}=(default)")
    if hints is not None and hints.node_selector:
        parts.append("node_selector=" + ",".join(f"{k}={v}" for k, v in hints.node_selector.items()))
    if hints is not None and hints.tolerations:
        parts.append(f"tolerations={len(hints.tolerations)}")
    if hints is not None and hints.env:
        parts.append("env=" + ",".join(sorted(hints.env)))  # names only: values may be secrets
    return one_line(" ".join(parts))


def render_plan(plan: PlanLike, fmt: str = "text", origins: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """The plan in ``fmt`` (text | dot | mermaid | json); raises ValueError for anything else. ``origins`` (task id
    -> hint key -> origin) adds where each hint came from to the text and json views."""
    if fmt == "text":
        return _text(plan, origins)
    if fmt == "dot":
        return _dot(plan)
    if fmt == "mermaid":
        return _mermaid(plan)
    if fmt == "json":
        return _json(plan, origins)
    raise ValueError(f"unknown plan format {fmt!r}; choose one of {', '.join(FORMATS)}")


def summary(plan: PlanLike) -> str:
    counts = {"bullet": 0, "master": 0, "complete": 0}
    for node in plan.nodes.values():
        name = placement_name(node)
        counts[name] = counts.get(name, 0) + 1
    parts = [f"{counts.pop('bullet')} bullet", f"{counts.pop('master')} master",
             f"{counts.pop('complete')} already complete"]  # fmt: skip
    parts += [f"{n} {k}" for k, n in sorted(counts.items()) if n]
    total = len(plan.nodes)
    return f"Plan: {total} task{'s' if total != 1 else ''} ({', '.join(parts)})"


# -- text -----------------------------------------------------------------------------------------------------
def _text(plan: PlanLike, origins: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """An indented tree from the root; a task shared by several dependents is expanded once, then referenced.

    Walked with an explicit stack: a chain of thousands of tasks must not hit Python's recursion limit.
    """
    lines = [summary(plan)]
    seen: set[str] = set()
    # (task id, prefix for this line, prefix for its children, connector)
    stack: list[tuple[str, str, str]] = [(plan.root_id, "", "")]
    while stack:
        task_id, lead, child_lead = stack.pop()
        node = plan.nodes.get(task_id)
        if node is None:
            lines.append(f"{lead}? [{short_id(task_id)}] (not in plan)")
            continue
        text = f"{lead}{label(node)} [{short_id(task_id)}] {placement_name(node)}"
        where = origins.get(task_id) if origins is not None else None
        hints = hints_text(node, where) if placement_name(node) == "bullet" else ""
        if hints:
            text += f" {{{hints}}}"
        if task_id in seen and node.deps:
            lines.append(text + " (dependencies shown above)")
            continue
        lines.append(text)
        seen.add(task_id)
        deps = list(node.deps)
        children = []
        for i, dep in enumerate(deps):
            last = i == len(deps) - 1
            children.append((dep, child_lead + ("└── " if last else "├── "), child_lead + ("    " if last else "│   ")))
        stack.extend(reversed(children))
    unreachable = [n for tid, n in plan.nodes.items() if tid not in seen]
    if unreachable:
        lines.append(f"not reachable from the root ({len(unreachable)}):")
        lines.extend(f"  {label(n)} [{short_id(n.task_id)}] {placement_name(n)}" for n in unreachable)
    return "\n".join(lines) + "\n"


# -- graphviz dot ---------------------------------------------------------------------------------------------
def _dot_quote(s: str) -> str:
    # DOT double-quoted strings: only backslash and the quote need escaping; newlines become \n escapes.
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot(plan: PlanLike) -> str:
    out = [
        "digraph kannon_plan {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
        f"  label={_dot_quote(summary(plan))};",
        "  labelloc=t;",
    ]
    for task_id, node in plan.nodes.items():
        kind = placement_name(node)
        attrs = [
            f"label={_dot_quote(label(node) + chr(10) + short_id(task_id) + ' · ' + kind)}",
            f'fillcolor="{_FILL.get(kind, "#ffffff")}"',
            f'color="{_STROKE.get(kind, "#000000")}"',
            f"tooltip={_dot_quote(task_id)}",
        ]
        if task_id == plan.root_id:
            attrs.append("penwidth=2")
        out.append(f"  {_dot_quote(task_id)} [{', '.join(attrs)}];")
    for task_id, node in plan.nodes.items():
        for dep in node.deps:
            out.append(f"  {_dot_quote(dep)} -> {_dot_quote(task_id)};")
    out.append("}")
    return "\n".join(out) + "\n"


# -- mermaid --------------------------------------------------------------------------------------------------
def _mermaid_text(s: str) -> str:
    # Mermaid labels inside "..." take HTML entity codes written as #name; — escape what would end or inject.
    return s.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _mermaid(plan: PlanLike) -> str:
    # Task ids are safe identifiers already, but node ids are kept short and independent of the task id anyway.
    ids = {task_id: f"n{i}" for i, task_id in enumerate(plan.nodes)}
    out = ["flowchart LR"]
    for task_id, node in plan.nodes.items():
        text = _mermaid_text(f"{label(node)} [{short_id(task_id)}]")
        out.append(f'  {ids[task_id]}["{text}"]:::{placement_name(node)}')
    for task_id, node in plan.nodes.items():
        for dep in node.deps:
            if dep in ids:
                out.append(f"  {ids[dep]} --> {ids[task_id]}")
    for kind in _FILL:
        out.append(f"  classDef {kind} fill:{_FILL[kind]},stroke:{_STROKE[kind]}")
    return "\n".join(out) + "\n"


# -- json -----------------------------------------------------------------------------------------------------
def plan_dict(plan: PlanLike, origins: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, Any]:
    where = origins or {}
    return {
        "schema": PLAN_JSON_SCHEMA,
        "root_id": plan.root_id,
        "nodes": [
            {
                "task_id": n.task_id,
                "family": n.family,
                "params": n.params,
                "placement": placement_name(n),
                "deps": list(n.deps),
                **({"hints": hints_text(n)} if hints_text(n) else {}),
                **({"hint_origins": dict(where[n.task_id])} if n.task_id in where else {}),
            }
            for n in plan.nodes.values()
        ],
    }


def _json(plan: PlanLike, origins: Mapping[str, Mapping[str, str]] | None = None) -> str:
    return json.dumps(plan_dict(plan, origins), indent=2, ensure_ascii=False) + "\n"
