"""TaskOnBullet: a gokart task that kannon runs in a child (process, container or Kubernetes Job)."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import gokart

from kannon.hints import Hints

T = TypeVar("T")


class TaskOnBullet(gokart.TaskOnKart[T]):
    """Drop-in replacement for ``gokart.TaskOnKart`` marking a task to run as a bullet.

    Per-class hints::

        class Train(kannon.TaskOnBullet):
            kannon_hints = kannon.Hints(cpu="2", memory="4Gi", retries=2, timeout=3600)

    Per-instance overrides (merged over the class hints)::

        Train(data=d).with_hints(memory="16Gi")

    Hints never change the task's unique id or its output path.
    """

    kannon_hints: ClassVar[Hints] = Hints()

    def with_hints(self, **overrides: Any) -> TaskOnBullet[T]:
        # luigi returns one cached instance per parameter set, so this applies to every reference to the task.
        self._kannon_instance_hints = Hints(**overrides)
        return self

    def bullet_hints(self) -> Hints:
        instance: Hints | None = getattr(self, "_kannon_instance_hints", None)
        base = type(self).kannon_hints
        return base.merged(instance) if instance is not None else base


def is_bullet(task: object) -> bool:
    return isinstance(task, TaskOnBullet)
