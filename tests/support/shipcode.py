"""A two-bullet project for the code-shipping e2e tests (docs/code-shipping.md), and a ``kannon build`` runner.

Layout: ``<tmp>/src/shipwired/`` (a package with the subpackage ``sub``) is the code, on the master's PYTHONPATH
only; ``<tmp>/work`` is the master's working directory and holds the workspace ``work/resources``. The tests mount
``work`` (and the interpreter, venv and kannon checkout) into the children, never ``src``: a child can only get
the project's code from the shipped archive.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable

PIPELINE = '''
import os
from pathlib import Path

import luigi

import kannon
from shipwired.sub import words


class ShipA(kannon.TaskOnBullet[str]):
    rev = luigi.IntParameter()

    def run(self):
        self.dump(words.greeting())


class ShipB(kannon.TaskOnBullet[str]):
    rev = luigi.IntParameter()

    def requires(self):
        return ShipA(rev=self.rev)

    def run(self):
        text = self.load() + "!"
        Path(self.workspace_directory, f"out-{self.rev}.txt").write_text(text)
        self.dump(text)


def root():
    return ShipB(rev=int(os.environ["SHIP_REV"]))
'''


class Project:
    def __init__(self, tmp: Path) -> None:
        self.src, self.work = tmp / "src", tmp / "work"
        pkg = self.src / "shipwired"
        (pkg / "sub").mkdir(parents=True)
        self.work.mkdir()
        (pkg / "__init__.py").write_text("")
        (pkg / "pipeline.py").write_text(PIPELINE)
        (pkg / "sub" / "__init__.py").write_text("")
        self.set_greeting("hello v1")

    @property
    def resources(self) -> Path:
        return self.work / "resources"

    def set_greeting(self, text: str) -> None:
        (self.src / "shipwired" / "sub" / "words.py").write_text(f"def greeting():\n    return {text!r}\n")

    def output(self, rev: int) -> str:
        return (self.resources / f"out-{rev}.txt").read_text()

    def archives(self) -> list[Path]:
        return sorted((self.resources / "kannon" / "code").glob("*.tar.gz"))

    def build(self, rev: int, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``kannon build shipwired.pipeline:root`` from ``work`` (its output: stdout and stderr together)."""
        argv = [PY, "-m", "kannon", "build", "shipwired.pipeline:root", "--workspace", str(self.resources), *args]
        full_env = {**os.environ, **(env or {}), "SHIP_REV": str(rev),
                    "PYTHONPATH": os.pathsep.join([str(REPO), str(self.src)])}  # fmt: skip
        return subprocess.run(argv, cwd=self.work, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=300, check=False)  # fmt: skip


def check_shipping_scenario(project: Project, run: object) -> None:
    """The scenario both backends share; ``run(rev, *extra_args)`` builds with that backend's options."""
    assert callable(run)
    # Control: without --ship-code the child really lacks the code, and the reason suggests the flag: found at plan
    # time where the backend can probe its image (Docker: exit 2, nothing runs), else by the child (exit 8).
    control = run(1)
    probed = "cannot be imported by a child on the docker backend" in control.stdout
    assert control.returncode == (2 if probed else 1), control.stdout
    assert probed or "exit code 8" in control.stdout, control.stdout
    assert "shipwired" in control.stdout and "--ship-code" in control.stdout, control.stdout
    assert project.archives() == []

    # A package with a subpackage runs from the shipped code; the run says what it shipped.
    first = run(1, "--ship-code")
    assert first.returncode == 0, first.stdout
    assert project.output(1) == "hello v1!"
    (archive_v1,) = project.archives()
    assert f"sha256 {archive_v1.name[:12]}" in first.stdout and "shipped code: 4 files" in first.stdout, first.stdout

    # The user edits a module: the next run executes the edited code (same image, nothing rebuilt).
    project.set_greeting("hello v2")
    second = run(2, "--ship-code")
    assert second.returncode == 0, second.stdout
    assert project.output(2) == "hello v2!"
    archives = project.archives()
    assert len(archives) == 2
    (archive_v2,) = [a for a in archives if a != archive_v1]

    # Unchanged code: the archive is not uploaded again (same inode and mtime, no new archive), yet the run ran.
    before = archive_v2.stat()
    third = run(3, "--ship-code")
    assert third.returncode == 0, third.stdout
    assert project.output(3) == "hello v2!"
    after = archive_v2.stat()
    assert project.archives() == archives
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
