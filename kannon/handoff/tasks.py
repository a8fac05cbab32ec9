"""What the hand-off reads off a task, the same on both sides: its unique id, the values it was constructed with,
and how kannon shows it (parameters a user marked private never are)."""

from __future__ import annotations

from typing import Any

import gokart
import luigi
from luigi.parameter import ParameterVisibility


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
