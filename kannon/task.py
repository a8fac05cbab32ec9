"""TaskOnBullet: a gokart task that kannon runs in a child (process, container or Kubernetes Job)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar, overload

import gokart

from kannon.hints import Hints

T = TypeVar("T")
R = TypeVar("R")
Self_ = TypeVar("Self_")


class _unhashed(Generic[Self_, R]):  # lower case: used as a decorator, like a method
    """A method gokart cannot see.

    With ``serialized_task_definition_check=True`` gokart hashes the source of every function and method member of a
    task class that ``TaskOnKart`` lacks (``TaskOnKart.get_own_code``). A method defined here would enter the unique
    id of every bullet, so a class would get a different id as a bullet than as a ``TaskOnKart`` (and a kannon
    upgrade would change users' ids). Accessed on an instance this returns a ``functools.partial`` — neither a
    function nor a method to ``inspect``; on the class, this descriptor itself."""

    def __init__(self, func: Callable[..., R]) -> None:
        self.func = func
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _unhashed[Self_, R]: ...
    @overload
    def __get__(self, obj: Self_, owner: type | None = None) -> Callable[..., R]: ...
    def __get__(self, obj: Self_ | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return functools.partial(self.func, obj)


class TaskOnBullet(gokart.TaskOnKart[T]):
    """Drop-in replacement for ``gokart.TaskOnKart`` marking a task to run as a bullet.

    Per-class hints::

        class Train(kannon.TaskOnBullet):
            kannon_hints = kannon.Hints(cpu="2", memory="4Gi", retries=2, timeout=3600)

    Per-instance overrides (merged over the class hints)::

        Train(data=d).with_hints(memory="16Gi")

    Hints never change the task's unique id or its output path, and a bullet's unique id equals the id the same
    class has as a ``TaskOnKart`` under every gokart option (this class adds no method gokart hashes).
    """

    kannon_hints: ClassVar[Hints] = Hints()

    @_unhashed
    def with_hints(self: TaskOnBullet[Any], **overrides: Any) -> TaskOnBullet[Any]:
        # luigi returns one cached instance per parameter set, so this applies to every reference to the task.
        self._kannon_instance_hints = Hints(**overrides)
        return self

    @_unhashed
    def bullet_hints(self: TaskOnBullet[Any]) -> Hints:
        instance: Hints | None = getattr(self, "_kannon_instance_hints", None)
        base = type(self).kannon_hints
        return base.merged(instance) if instance is not None else base


def is_bullet(task: object) -> bool:
    return isinstance(task, TaskOnBullet)
