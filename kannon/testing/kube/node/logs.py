"""Container logs as the kubelet keeps them: one per container instance, line by line with timestamps."""

from __future__ import annotations

import threading
from datetime import datetime, timezone


class ContainerLog:
    """The log of one container instance: complete lines with their timestamps, plus a 'done' flag for follow."""

    MAX_LINES = 200_000

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.lines: list[tuple[str, bytes]] = []
        self.dropped = 0
        self.done = False

    def append(self, line: bytes) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self.cond:
            self.lines.append((stamp, line if line.endswith(b"\n") else line + b"\n"))
            if len(self.lines) > self.MAX_LINES:
                del self.lines[: len(self.lines) - self.MAX_LINES]
                self.dropped += 1
            self.cond.notify_all()

    def finish(self) -> None:
        with self.cond:
            self.done = True
            self.cond.notify_all()

    def read_from(self, index: int, timeout: float | None) -> tuple[list[tuple[str, bytes]], int, bool]:
        """Lines from `index` on, waiting up to `timeout` for new ones; returns (lines, next index, done)."""
        with self.cond:
            if timeout and index >= len(self.lines) and not self.done:
                self.cond.wait(timeout)
            chunk = self.lines[index:]
            return chunk, index + len(chunk), self.done and index + len(chunk) >= len(self.lines)
