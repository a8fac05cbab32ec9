"""Bullets that use gokart's own failure and lock parameters (issue 13): ``fail_on_empty_dump`` and the redis task-lock
parameters. Children import this module by name."""

from __future__ import annotations

import os
from typing import Any

import luigi
import pandas as pd

import kannon


class EmptyFrame(kannon.TaskOnBullet):
    """Dumps an empty DataFrame: with ``fail_on_empty_dump`` set, gokart's dump() raises ``EmptyDumpError``."""

    tag = luigi.Parameter(default="empty")

    def run(self) -> None:
        self.dump(pd.DataFrame())


class LockParams(kannon.TaskOnBullet):
    """Dumps the redis lock parameters it was built with, and its pid. Its output is a target without a lock (the
    redis parameters would otherwise make gokart's dump take a lock on a redis server this test has none of)."""

    def output(self) -> Any:
        from gokart.conflict_prevention_lock.task_lock import make_task_lock_params
        from gokart.target import make_target

        path = os.path.join(self.workspace_directory, "kannon_tests", "lock_params.pkl")
        unique_id = self.make_unique_id()
        return make_target(path, unique_id=unique_id, task_lock_params=make_task_lock_params(path, unique_id))

    def run(self) -> None:
        self.dump({"redis_host": self.redis_host, "redis_port": self.redis_port, "redis_timeout": self.redis_timeout,
                   "should_lock_run": self.should_lock_run, "pid": os.getpid()})  # fmt: skip
