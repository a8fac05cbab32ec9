"""Helpers of the ``kannon`` command: one-line option errors, option types, the run's context, messages."""

from __future__ import annotations

import argparse
import inspect
import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

EXIT_BAD_INPUT = 2

# git's shortest abbreviation: a shorter number is always a position, never an id prefix
MIN_ID_PREFIX = 4


def position(which: str, is_id_prefix: Callable[[str], bool]) -> int | None:
    """``which`` (a ``--run`` value) as a position (1-based; negative from the end), or None: an id prefix.

    Run ids are hex, so a prefix can be all digits ("957166"): a number of MIN_ID_PREFIX digits or more is read as an
    id prefix when one matches, else as a position."""
    if not which.lstrip("-").isdigit():
        return None
    if which.startswith("-") or len(which) < MIN_ID_PREFIX or not is_id_prefix(which):
        return int(which)
    return None


def candidates(module: Any) -> str:
    """What a TARGET in ``module`` could name: its task instances and its functions."""
    import luigi

    tasks, functions = [], []
    for key, value in sorted(vars(module).items()):
        if key.startswith("_"):
            continue
        if isinstance(value, luigi.Task):
            tasks.append(key)
        elif inspect.isfunction(value) and value.__module__ == module.__name__:
            functions.append(f"{key}()")
    if not tasks and not functions:
        return f"{module.__name__} defines no task instance or function to use as TARGET"
    found = ", ".join(tasks + functions)
    return f"it has these task instances and functions: {found}"


def ship_code(ns: argparse.Namespace, extra: list[str]) -> tuple[Path, Any] | None:
    """``--ship-code``: (code root, ship.Archive) for the loaded target, or None; ShipError when it cannot ship."""
    if not getattr(ns, "ship_code", False):
        return None
    import os

    from kannon import ship

    module_part = ns.target.rpartition(":")[0]
    if ns.code_root:
        root = Path(ns.code_root).resolve()
    elif module_part.endswith(".py") or os.sep in module_part:
        root = Path(extra[0])
    else:
        root = ship.code_root_for(module_part)
    if not root.is_dir():
        raise ship.ShipError(f"--code-root {ns.code_root} is not a directory")
    return root, ship.prepare(root, max_bytes=ns.ship_code_max_mb << 20)


def is_lease_held(e: BaseException) -> bool:
    # By class name: kannon.backends.base.LeaseHeld arrives with the run lease (another branch of work).
    return any(f"{c.__module__}.{c.__qualname__}" == "kannon.backends.base.LeaseHeld" for c in type(e).__mro__)


def run_context(ns: argparse.Namespace) -> dict[str, str]:
    """What the report's header says about the run; values of --env K=V are hidden (they may be secrets)."""
    import luigi

    argv, shown = sys.argv[1:], []
    for i, arg in enumerate(argv):
        if i > 0 and argv[i - 1] == "--env" and "=" in arg:
            arg = arg.split("=", 1)[0] + "=***"
        elif arg.startswith("--env=") and arg.count("=") > 1:
            arg = arg.split("=", 2)[0] + "=" + arg.split("=", 2)[1] + "=***"
        shown.append(arg)
    workspace = luigi.configuration.get_config().get("TaskOnKart", "workspace_directory", "./resources/")
    return {
        "target": ns.target,
        "command": shlex.join(["kannon", *shown]),
        "workspace": workspace if "://" in workspace else str(Path(workspace).absolute()),
        "kannon": version(),
    }


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse reports anything else as one line, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


LEASE_WAIT_DEFAULT = 86400.0


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {text}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """Bad options are one line (``kannon: ...``) and exit 2, not argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"kannon: {message} (see `{self.prog} --help`)\n")


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kannon")
    except PackageNotFoundError:
        return "unknown"


class PrefixFormatter(logging.Formatter):
    """kannon's own log lines carry the ``kannon:`` prefix, like every other line it prints."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if text.startswith("kannon") else "kannon: " + text
