"""Hints files: resource hints per task class, applied to a run without editing code (issue 17).

``kannon build --hints FILE`` / ``kannon plan --hints FILE`` / ``Kannon(hints_file=FILE)``. The format is INI
(Python's configparser), one section per task family, the very text ``kannon hints suggest --format ini``
prints::

    [Train]
    cpu = 500m
    memory = 384Mi

INI because it is flat (family -> key -> scalar, exactly what a suggestion is), needs no dependency, takes
comments (the suggestion's reasoning stays beside the value), and luigi users already write their configs in it.
The keys are the scalar fields of :class:`kannon.hints.Hints` (``cpu``, ``memory``, ``gpu``, ``image``,
``retries``, ``timeout``); mappings (``env``, ``node_selector``, ``tolerations``) stay in code.

Precedence, highest first: the file; the *instance* hints (``task.with_hints(...)``, set on one task object);
the *class* hints (``kannon_hints = Hints(...)`` on the task class, inherited from a base class like any class
attribute); then the default (the backend's / template's, or ``Kannon(retries=...)``). Per key: a file that sets
only ``memory`` keeps the instance's or class's ``cpu``.

A bad file fails before anything launches, with one line naming the file, section and key, and the fix.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kannon.hints import Hints
from kannon.plan import Plan, PlanError
from kannon.result import Placement

Origin = str  # "file" | "instance" | "class" | "default"
_CONVERT: dict[str, Callable[[str], Any]] = {"gpu": int, "retries": int, "timeout": float, "oom_growth": float}
_NOT_IN_FILES = {"env", "node_selector", "tolerations"}  # mappings: code only
KEYS = tuple(f.name for f in dataclasses.fields(Hints) if f.name not in _NOT_IN_FILES)
_NO_DEFAULT_SECTION = "\x00"  # so that a [DEFAULT] section is a task family like any other (and refused)


class HintsFileError(PlanError):
    """A hints file cannot be applied: ``str()`` is one line naming file, section, key and the fix."""

    def __init__(self, line: str) -> None:
        self.problems = [line]
        Exception.__init__(self, line)


@dataclass(frozen=True)
class HintsFile:
    path: str
    sections: Mapping[str, Hints]  # family -> the hints the file sets for it

    def apply(self, family: str, hints: Hints | None) -> Hints:
        """``hints`` (class merged with instance) with the file's values for ``family`` over them."""
        base = hints or Hints()
        mine = self.sections.get(family)
        return base.merged(mine) if mine is not None else base


def load(path: str | os.PathLike[str]) -> HintsFile:
    """Parse and validate a hints file (everything but which families exist: that needs the plan)."""
    p = Path(path)
    parser = configparser.ConfigParser(interpolation=None, default_section=_NO_DEFAULT_SECTION, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive, as in Hints
    try:
        with p.open(encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        raise HintsFileError(f"hints file {p} does not exist (passed with --hints)") from None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise HintsFileError(f"hints file {p} cannot be read ({reason})") from None
    except configparser.Error as e:
        first = str(e).splitlines()[0].rstrip(":")
        raise HintsFileError(f"hints file {p} is not an INI file ({first}); write one [TaskFamily] section per task "
                             "class with lines like `memory = 512Mi`, as `kannon hints suggest --format ini` "
                             "prints") from None  # fmt: skip
    sections: dict[str, Hints] = {}
    for family in parser.sections():
        values: dict[str, Any] = {}
        for key, raw in parser.items(family):
            where = f"hints file {p}, section [{family}], key {key!r}"
            if key not in KEYS:
                raise HintsFileError(f"{where}: unknown key; use one of {', '.join(KEYS)}")
            text = raw.strip()
            try:
                value = _CONVERT.get(key, str)(text)
            except ValueError:
                kind = "a whole number" if _CONVERT.get(key) is int else "a number"
                raise HintsFileError(f"{where}: {text!r} is not {kind}; write e.g. `{key} = 2`") from None
            problems = Hints(**{key: value}).errors()
            if problems:
                raise HintsFileError(f"{where}: {problems[0]}; fix the value")
            values[key] = value
        sections[family] = Hints(**values)
    return HintsFile(str(p), sections)


def bullet_families() -> set[str]:
    """Names of every loaded TaskOnBullet class (a family can be below a complete task, so not in the plan)."""
    from kannon.task import TaskOnBullet

    found: set[str] = set()
    todo: list[type[Any]] = [TaskOnBullet]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__name__ not in found:
                found.add(sub.__name__)
                todo.append(sub)
    return found


def apply_to_plan(plan: Plan, hf: HintsFile, validate: Callable[[str, Hints], list[str]] | None = None) -> None:
    """Lay ``hf`` over every bullet's hints in ``plan``; HintsFileError for a section naming no bullet class,
    PlanError for values the backend cannot honour (``validate``, as make_plan checks class hints)."""
    in_plan = {n.family for n in plan.nodes.values() if n.placement is Placement.BULLET}
    known = in_plan | bullet_families()
    for family in hf.sections:
        if family not in known:
            listed = ", ".join(sorted(in_plan)) or "none"
            raise HintsFileError(f"hints file {hf.path}, section [{family}]: no bullet task class of that name in "
                                 f"this pipeline (its bullet classes: {listed}); fix the section name")  # fmt: skip
    problems: list[str] = []
    for node in plan.nodes.values():
        if node.placement is not Placement.BULLET or node.family not in hf.sections:
            continue
        node.hints = hf.apply(node.family, node.hints)
        if validate is not None:
            problems += [f"{node.family}: {err} (with hints file {hf.path}, section [{node.family}]); fix the file"
                         for err in validate(node.family, node.hints)]  # fmt: skip
    if problems:
        raise PlanError(list(dict.fromkeys(problems)))


def origins(plan: Plan, hf: HintsFile | None) -> dict[str, dict[str, Origin]]:
    """task id -> {hint key: where its value came from} for every bullet: file / instance / class / default."""
    out: dict[str, dict[str, Origin]] = {}
    for node in plan.nodes.values():
        if node.placement is not Placement.BULLET:
            continue
        cls_hints: Hints = getattr(type(node.task), "kannon_hints", Hints())
        inst: Hints | None = getattr(node.task, "_kannon_instance_hints", None)
        mine = hf.sections.get(node.family) if hf is not None else None
        where: dict[str, Origin] = {}
        for key in KEYS:
            if mine is not None and getattr(mine, key) is not None:
                where[key] = "file"
            elif inst is not None and getattr(inst, key) is not None:
                where[key] = "instance"
            elif getattr(cls_hints, key) is not None:
                where[key] = "class"
            else:
                where[key] = "default"
        out[node.task_id] = where
    return out
