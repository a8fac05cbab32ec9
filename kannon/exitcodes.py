"""Exit codes of the child entrypoint (`kannon run-task`), shared by every backend.

Python itself exits 1 on an uncaught exception and 2 on bad arguments; signals show as 128+n.
"""

from __future__ import annotations

import signal

OK = 0
CRASHED = 1  # an unexpected exception in the child itself (also Python's own code for an uncaught exception)
BAD_SPEC = 3  # unreadable, altered (hash mismatch) or malformed hand-off spec
ID_MISMATCH = 4  # a rebuilt task differs from the master's: its unique id or a constructor value (any parameter)
UPSTREAM_MISSING = 5  # an upstream output is missing: the child refuses to recompute it
TASK_FAILED = 6  # the task's run() raised
OUTPUT_MISSING = 7  # run() returned but the task is not complete
IMPORT_FAILED = 8  # a module named in the spec cannot be imported here
SPEC_KEY = 9  # KANNON_SPEC_KEY is missing, or the sealed spec does not verify with it (kannon.speccrypt)
REQUESTED = 10  # not a failure: run() yielded incomplete tasks (dynamic dependencies), listed in the child's record

#: the child's last stderr line starting with this prefix is its own one-line explanation
REASON_PREFIX = "kannon-child: "
#: a line with this prefix carries the task's exception as JSON {"type", "module", "message", "traceback"}
REMOTE_ERROR_PREFIX = "kannon-child-error: "
REMOTE_ERROR_MAX_TRACEBACK = 4000  # characters: the line must fit in the log tail every backend reads (64 KiB)

_TEXT = {
    OK: "succeeded",
    BAD_SPEC: "bad hand-off spec",
    ID_MISMATCH: "the rebuilt task differs from the master's (unique id or a parameter value)",
    UPSTREAM_MISSING: "an upstream output is missing",
    TASK_FAILED: "the task raised an exception",
    OUTPUT_MISSING: "the task finished but its output is missing",
    IMPORT_FAILED: "the task's module cannot be imported in the child",
    SPEC_KEY: "the spec key is missing from the child's environment or does not open the spec",
    REQUESTED: "run() yielded incomplete tasks (dynamic dependencies); the master schedules them and runs it again",
    1: "the child crashed (uncaught exception)",
    2: "the child was started with bad arguments",
}

#: failure classes (the `failure_class` field) for the child's own exit codes
CLASS = {
    BAD_SPEC: "BadSpec",
    ID_MISMATCH: "IdMismatch",
    UPSTREAM_MISSING: "UpstreamMissing",
    TASK_FAILED: "TaskFailed",
    OUTPUT_MISSING: "OutputMissing",
    IMPORT_FAILED: "ImportFailed",
    SPEC_KEY: "SpecKey",
    REQUESTED: "Requested",
}


def describe(code: int | None, log_tail: tuple[str, ...] | list[str] = ()) -> str:
    """A one-line reason for an exit code, preferring the child's own explanation from its log."""
    for line in reversed(log_tail):
        if line.startswith(REASON_PREFIX):
            return line[len(REASON_PREFIX) :].strip()
    if code is None:
        return "no exit code"
    if code in _TEXT:
        return f"exit code {code}: {_TEXT[code]}"
    if code > 128:
        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            name = f"signal {code - 128}"
        hint = " (often: out of memory)" if code == 137 else ""
        return f"killed by {name} (exit code {code}){hint}"
    return f"exit code {code}"


def failure_class(code: int | None) -> str | None:
    if code == 0:
        return None
    if code is not None and code in CLASS:
        return CLASS[code]
    if code is not None and code > 128:
        return "Killed"
    return "NonZeroExit"
