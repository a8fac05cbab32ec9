"""The plugin contract. A kannon plugin is a module (or object) with ``@kannon.hookimpl`` functions named as below,
announced under the ``kannon`` entry-point group::

    [project.entry-points.kannon]
    mybackend = "my_package.kannon_plugin"

The built-in backends register through exactly this door (see kannon's own pyproject.toml).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from kannon.backends.base import RunInfo
    from kannon.events import Event
    from kannon.plugins import BackendSpec
    from kannon.result import BuildResult

hookspec = pluggy.HookspecMarker("kannon")
hookimpl = pluggy.HookimplMarker("kannon")


@hookspec
def kannon_backends() -> list[BackendSpec]:  # type: ignore[empty-body]
    """Return the backends this plugin provides (name, factory, CLI options)."""


@hookspec
def kannon_run_start(run: RunInfo, backend: str) -> None:
    """A build is about to plan and run."""


@hookspec
def kannon_event(event: Event) -> None:
    """Every state change of the run (the event-log stream); see kannon.events for the schema."""


@hookspec
def kannon_task_start(event: Event) -> None:
    """A task (master or bullet) attempt was handed off to run."""


@hookspec
def kannon_task_success(event: Event) -> None:
    """A task finished and its output was confirmed."""


@hookspec
def kannon_task_failure(event: Event) -> None:
    """A task failed for good (no retries left, or not retryable)."""


@hookspec
def kannon_task_retry(event: Event) -> None:
    """An attempt failed and another one is scheduled."""


@hookspec
def kannon_run_end(run: RunInfo, result: BuildResult) -> None:
    """The build finished (successfully or not); ``result`` lists every task."""


@hookspec
def kannon_task_log(task_id: str, label: str, line: str) -> None:
    """One line of a child's output (only with ``follow_logs``); ``label`` is a short per-task prefix."""
