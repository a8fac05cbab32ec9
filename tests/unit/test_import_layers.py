"""Layering: backends and the child never import the CLI or the scheduler (the old fork-server entry point made a
circle local backend -> cli -> scheduler -> local backend)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

KANNON = Path(__file__).resolve().parents[2] / "kannon"
FORBIDDEN = ("kannon.cli", "kannon.scheduler")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            found.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom) and n.module:
            found.add(n.module)
            found.update(f"{n.module}.{a.name}" for a in n.names)
    return found


@pytest.mark.parametrize("module", ["backends/base.py", "backends/local.py", "backends/docker", "child.py",
                                    "runner.py", "handoff"])  # fmt: skip
def test_lower_layers_do_not_import_the_cli_or_the_scheduler(module: str) -> None:
    path = KANNON / module
    files = sorted(path.glob("*.py")) if path.is_dir() else [path]  # a package: every module of it
    assert files, f"kannon/{module} not found"
    bad = sorted(m for f in files for m in imported_modules(f) if m.startswith(FORBIDDEN))
    assert bad == [], f"kannon/{module} imports {bad}"


def test_every_module_imports_on_this_python() -> None:
    """Each supported Python runs this (the Kubernetes-emulator tier runs on two of them only): a module that
    uses a name a newer stdlib removed or an older one lacks fails here, on every interpreter, in seconds."""
    import subprocess
    import sys

    modules = sorted(
        ".".join(("kannon", *p.relative_to(KANNON).with_suffix("").parts)).removesuffix(".__init__")
        for p in KANNON.rglob("*.py")
        if p.stem != "__main__"
    )
    assert len(modules) > 100, modules
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\nprint('ok')"
    out = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr[-3000:]
