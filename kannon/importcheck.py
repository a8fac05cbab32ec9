"""Plan-time check that every bullet's module imports where its child will run (issue 18 point 6), so a pipeline
that imports through something only the master has (a ``sys.path`` edit, a module built at run time) stops with
one line naming the task and the fix before anything runs, instead of after master tasks have already run.

Per backend: local fork mode needs none (the child inherits the master's modules); local spawn mode imports in a
fresh interpreter (kannon.plan.spawned_import_failures); a backend with an ``import_failures(modules, sys_path,
image)`` method (Docker: one probe container per image that runs no task) is asked; with shipped code the archive
must hold each module (the child puts it first on sys.path). Otherwise the check is not possible and
:func:`check` says so in one note, never silently.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Mapping, Sequence
from typing import Any

from kannon.handoff import import_roots
from kannon.plan import Plan, describe_safe, spawned_import_failures
from kannon.result import Placement


def check(plan: Plan, executor: Any, sys_path: Sequence[str] = (), archive: bytes | None = None,
          code_root: str | None = None) -> tuple[list[str], str | None]:  # fmt: skip
    """(problems, note): one problem per module a child cannot import; a note when no check was possible."""
    modules = plan.bullet_modules()
    if not modules:
        return [], None
    # the sys.path a child gets: the master's additions, then where the master imported the modules from
    roots = [*sys_path, *import_roots(modules)]
    name = getattr(executor, "name", "?")
    if archive is not None:
        missing = sorted(set(modules) - archive_modules(archive))
        # Outside the archive, a module imports from the image. One the master found through its own sys.path
        # additions is surely not there (the case); of the others (installed packages) nothing is known.
        edited = {m for m in missing if _under_any(_module_file(m), sys_path)}
        fix = (f"The module is not in the shipped code (taken from {code_root}) and a child finds it only through "
               "the master's sys.path addition: move it under that directory, or set --code-root to one that "
               "contains it.")  # fmt: skip
        unknown = [m for m in missing if m not in edited]
        note = (f"not checked before the run (not in the shipped code; a child imports them from its image): "
                f"{', '.join(unknown)}") if unknown else None  # fmt: skip
        return _problems(plan, dict.fromkeys(edited, "not in the shipped archive"), fix, "with shipped code"), note
    if name == "local":
        if getattr(executor, "mode", None) != "spawn":
            return [], None  # a forked child inherits the master's modules
        return spawned_problems(plan, sys_path), None
    probe = getattr(executor, "import_failures", None)
    if probe is None:
        return [], (f"the {name} backend cannot check before the run that its children can import "
                    f"{', '.join(modules)}; --ship-code sends the code with the run and makes the check possible")
    by_image: dict[str | None, list[str]] = {}
    for node in plan.nodes.values():
        if node.placement is Placement.BULLET:
            image = node.hints.image if node.hints is not None else None
            by_image.setdefault(image, []).append(type(node.task).__module__)
    failed: dict[str, str] = {}
    for image, mods in by_image.items():
        failed.update(probe(sorted(set(mods)), roots, image))
    fix = (f"The {name} child sees only what its image and mounts hold: install the module in the image, mount "
           "its directory (at the same path), or run with --ship-code.")  # fmt: skip
    return _problems(plan, failed, fix, f"on the {name} backend"), None


def _module_file(module: str) -> str | None:
    import sys

    mod = sys.modules.get(module)
    path = getattr(mod, "__file__", None)
    return os.path.realpath(path) if path else None


def _under_any(path: str | None, roots: Sequence[str]) -> bool:
    if path is None:
        return False
    return any(os.path.commonpath([path, os.path.realpath(r)]) == os.path.realpath(r) for r in roots if r)


def archive_modules(data: bytes) -> set[str]:
    """The importable module names a shipped archive (tar.gz, paths relative to the code root) provides."""
    names: set[str] = set()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getnames():
            if not member.endswith(".py"):
                continue
            parts = member[: -len(".py")].split("/")
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if parts:
                names.add(".".join(parts))
    return names


def spawned_problems(plan: Plan, sys_path: Sequence[str] = (), env: Mapping[str, str] | None = None) -> list[str]:
    """One problem per bullet module a freshly started interpreter cannot import with the sys.path a child gets."""
    modules = plan.bullet_modules()
    failed = spawned_import_failures(modules, [*sys_path, *import_roots(modules)], env)
    fix = ("It imports through something only this process has (a sys.path edit, a module built at run time); "
           "put the directories on PYTHONPATH or pass Kannon(sys_path=[...]).")  # fmt: skip
    return _problems(plan, failed, fix, "started afresh")


def _problems(plan: Plan, failed: dict[str, str], fix: str, where: str) -> list[str]:
    problems = []
    for module, error in sorted(failed.items()):
        bullets = [n for n in plan.nodes.values()
                   if n.placement is Placement.BULLET and type(n.task).__module__ == module]  # fmt: skip
        first = describe_safe(bullets[0].task) if bullets else module
        more = f" and {len(bullets) - 1} more" if len(bullets) > 1 else ""
        problems.append(f"{first}{more}: its module {module} cannot be imported by a child {where} ({error}). {fix}")
    return problems
