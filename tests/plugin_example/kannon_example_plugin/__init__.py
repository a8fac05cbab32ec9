"""A third-party kannon plugin: the smallest complete backend, and an observer.

The backend ("example") runs each bullet as a plain subprocess of the master — the same child command every
backend runs — and shows that launch / cancel plus events is the whole contract. The observer appends one line
per event to the file named by KANNON_EXAMPLE_EVENTS (if set).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from typing import Any

import kannon
from kannon.backends.base import Executor, Finished, Launch, Started, tail_lines
from kannon.plugins import BackendSpec


class ExampleExecutor(Executor):
    name = "example"
    delivers_secrets = True  # RunInfo.secrets reach the child in its process environment, under Launch.env

    def __init__(self, tag: str = "example") -> None:
        super().__init__()
        self.python = sys.executable
        self.tag = tag
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def launch(self, launch: Launch) -> None:
        self.track(launch.key)
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        with launch.log_path.open("ab") as log:
            proc = subprocess.Popen(launch.argv(self.python), env={**os.environ, **self.secrets(), **launch.env,
                                    "KANNON_EXAMPLE_TAG": self.tag}, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        self._procs[launch.key] = proc
        self.emit(Started(launch.key, f"example pid {proc.pid}"))
        threading.Thread(target=self._wait, args=(launch, proc), daemon=True).start()

    def secrets(self) -> dict[str, str]:
        return dict(self.run.secrets) if self.run is not None else {}

    def _wait(self, launch: Launch, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        self._procs.pop(launch.key, None)
        tail = tail_lines(launch.log_path)
        reason = None if code == 0 else f"example backend: exit code {code}"
        self.emit(Finished(launch.key, code, reason, None if code == 0 else "NonZeroExit", log_tail=tail))

    def cancel(self, key: str) -> None:
        proc = self._procs.get(key)
        if proc is not None:
            os.killpg(proc.pid, signal.SIGKILL)


def _add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--example-tag", default="example", help="example backend: a tag passed to children")


@kannon.hookimpl
def kannon_backends() -> list[BackendSpec]:
    return [BackendSpec("example", ExampleExecutor, "subprocesses, from a third-party plugin", _add_options,
                        lambda ns: ExampleExecutor(tag=ns.example_tag))]  # fmt: skip


@kannon.hookimpl
def kannon_event(event: Any) -> None:
    path = os.environ.get("KANNON_EXAMPLE_EVENTS")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{event.kind} {event.family or '-'}\n")
