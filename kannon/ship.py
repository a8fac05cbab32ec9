"""Code shipping, master side: package the project's code the bullets need into a content-addressed archive.

``collect`` picks the files, ``build_archive`` makes a deterministic tar.gz named by its sha256, ``upload`` puts it
at ``<workspace>/kannon/code/<sha256>.tar.gz`` once per content. The child side is kannon.ship_child. Rules and
rationale: docs/code-shipping.md.

What is shipped, from the code root (the directory on ``sys.path`` that holds the project's top-level packages):

* every loaded module whose file is under the root, as ``<dotted/name>.py``;
* for every loaded package under the root, the files of its directory: its other modules (so lazy imports of a
  sibling module work and the archive does not depend on what happened to be imported) and data files, descending
  into plain (non-package) subdirectories, but not into subpackages that were not loaded;
* never: kannon, anything under site-packages/dist-packages or the interpreter's prefixes, virtualenvs (a directory
  with ``pyvenv.cfg``), ``__pycache__``/``*.pyc``, hidden files and directories, and what ``.gitignore`` /
  ``.kannonignore`` files exclude (git's syntax, via pathspec; those of the root's ancestors up to the git work
  tree's top apply too). A module the master imported is shipped even if ignored: the child must rebuild the same
  classes (a gitignored, generated ``_version.py`` is the usual case).
* Symlinks are followed when they resolve inside the root (shipped as regular files) and refused otherwise.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import sys
import sysconfig
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pathspec

from kannon import storage
from kannon.ship_child import ARCHIVE_SUFFIX, ShipError

__all__ = ["DEFAULT_MAX_BYTES", "Archive", "Manifest", "ShipError", "build_archive", "code_root_for", "collect",
           "spec_entry", "spec_sys_path", "upload"]  # fmt: skip

DEFAULT_MAX_BYTES = 50 * 1024 * 1024  # of uncompressed content; Metaflow warns at 100 MB, we refuse at half
FIXED_MTIME = 315532800  # 1980-01-01: fixed, and valid in every archive format
IGNORE_FILES = (".gitignore", ".kannonignore")  # in this order: a .kannonignore can re-include with "!pattern"
_SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class ShippedFile:
    arcname: str  # POSIX path relative to the code root
    path: Path  # where the master reads it
    size: int
    executable: bool


@dataclass(frozen=True)
class Manifest:
    root: Path
    files: tuple[ShippedFile, ...]  # sorted by arcname
    modules: tuple[str, ...]  # the loaded modules shipped
    skipped: tuple[str, ...] = ()  # loaded modules under the root not importable from it, with the reason

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class Archive:
    data: bytes = field(repr=False)
    sha256: str
    files: int
    size: int  # uncompressed content

    @property
    def name(self) -> str:
        return self.sha256 + ARCHIVE_SUFFIX

    def summary(self) -> str:
        """One line for `kannon plan` and the run summary."""
        return (f"shipped code: {self.files} files, {_human(self.size)} ({_human(len(self.data))} compressed), "
                f"sha256 {self.sha256[:12]}")  # fmt: skip


# -- choosing the code root --------------------------------------------------------------------------------------
def code_root_for(module_name: str, loaded_modules: Mapping[str, ModuleType] | None = None) -> Path:
    """The default code root for a target in ``module_name``: the directory its top-level package was imported from."""
    modules = sys.modules if loaded_modules is None else loaded_modules
    top = module_name.split(".")[0]
    module = modules.get(top)
    if module is None:
        raise ShipError(f"module {top} is not imported; import the target before shipping its code")
    paths = list(getattr(module, "__path__", None) or [])
    if paths:
        if len(paths) > 1:
            raise ShipError(f"{top} is a namespace package spread over {len(paths)} directories; choose one "
                            "with --code-root")  # fmt: skip
        return Path(paths[0]).absolute().parent
    file = getattr(module, "__file__", None)
    if not file:
        raise ShipError(f"module {top} has no file (built in?); choose the directory to ship with --code-root")
    return Path(file).absolute().parent


# -- collecting --------------------------------------------------------------------------------------------------
def collect(code_root: Path, loaded_modules: Mapping[str, ModuleType] | None = None) -> Manifest:
    """The files to ship from ``code_root`` for the modules loaded in this process (``sys.modules`` by default)."""
    modules = dict(sys.modules if loaded_modules is None else loaded_modules)
    root = Path(code_root).absolute()
    if not root.is_dir():
        raise ShipError(f"the code root {root} is not a directory")
    ctx = _Context(root)
    files: dict[str, ShippedFile] = {}
    package_dirs: set[str] = set()  # arcnames of loaded package directories
    shipped: list[str] = []
    skipped: list[str] = []
    for name, module in sorted(modules.items()):
        if name == "__main__" or name == "kannon" or name.startswith("kannon.") or module is None:
            continue
        file, paths = getattr(module, "__file__", None), list(getattr(module, "__path__", None) or [])
        rels = [r for r in (ctx.relative(p) for p in ([file] if file else []) + paths) if r is not None]
        if not rels:
            continue  # not the project's
        expected = name.replace(".", "/")
        ok = False
        for rel in rels:
            if rel == expected and paths:  # a package directory (regular or namespace)
                package_dirs.add(rel)
                ok = True
            elif _module_path(rel) in (expected, expected + "/__init__"):
                ok = True
                path = ctx.root / rel
                if path.is_file():
                    files[rel] = ctx.shipped(rel, path)
        if ok:
            shipped.append(name)
        else:
            skipped.append(f"{name} ({rels[0]} is not importable as {name} from the code root)")
    for rel in sorted(package_dirs):
        for f in ctx.walk(rel, package_dirs):
            files.setdefault(f.arcname, f)
    return Manifest(root, tuple(files[k] for k in sorted(files)), tuple(shipped), tuple(skipped))


class _Context:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.real = Path(os.path.realpath(root))
        self.excluded = _installed_paths(root)
        self._specs: dict[Path, list[tuple[Path, pathspec.GitIgnoreSpec]]] = {}
        top = next((d for d in (root, *root.parents) if (d / ".git").exists()), root)
        chain = [d for d in (root, *root.parents) if d == top or top in d.parents]
        inherited: list[tuple[Path, pathspec.GitIgnoreSpec]] = []
        for d in reversed(chain[1:]):  # ancestors above the root, outermost first
            inherited = inherited + _ignore_specs(d)
        self._specs[root] = inherited + _ignore_specs(root)

    def relative(self, file: str) -> str | None:
        """``file``'s POSIX path under the root, or None if it is not the project's."""
        path = os.path.abspath(file)
        for base in (str(self.root), str(self.real)):
            if path.startswith(base + os.sep):
                if any(path == p or path.startswith(p + os.sep) for p in self.excluded):
                    return None
                rel = Path(path).relative_to(base)
                if {"site-packages", "dist-packages"} & set(rel.parts):  # an environment inside the root
                    return None
                return rel.as_posix()
        return None

    def specs(self, directory: Path) -> list[tuple[Path, pathspec.GitIgnoreSpec]]:
        found = self._specs.get(directory)
        if found is None and self.root not in directory.parents:
            return []  # only paths under the root are ever walked
        if found is None:
            found = self._specs[directory] = self.specs(directory.parent) + _ignore_specs(directory)
        return found

    def ignored(self, path: Path, is_dir: bool) -> bool:
        verdict = False
        for base, spec in self.specs(path.parent):  # outermost first: the last file with a matching pattern wins
            rel = path.relative_to(base).as_posix() + ("/" if is_dir else "")
            result = spec.check_file(rel).include
            if result is not None:
                verdict = result
        return verdict

    def shipped(self, rel: str, path: Path) -> ShippedFile:
        st = os.stat(path)
        return ShippedFile(rel, path, st.st_size, bool(st.st_mode & stat.S_IXUSR))

    def walk(self, package: str, package_dirs: set[str]) -> Iterable[ShippedFile]:
        """Files of a loaded package directory: modules and data, plain subdirectories, not unloaded subpackages."""
        stack = [package]
        seen: set[str] = set()
        while stack:
            rel = stack.pop()
            directory = self.root / rel
            real = os.path.realpath(directory)
            if real in seen:  # a symlink loop
                continue
            seen.add(real)
            for entry in sorted(os.scandir(directory), key=lambda e: e.name):
                child_rel, child = f"{rel}/{entry.name}", directory / entry.name
                if entry.name.startswith(".") or entry.name == "__pycache__" or entry.name.endswith(_SKIP_SUFFIXES):
                    continue
                is_dir = entry.is_dir()
                if self.ignored(child, is_dir):
                    continue  # before the link check: an ignored link is never looked at
                if entry.is_symlink():
                    self._check_link(child_rel, child)
                if is_dir:
                    if (child / "pyvenv.cfg").exists() or child_rel in package_dirs:
                        continue  # a virtualenv; a loaded package walked on its own
                    if (child / "__init__.py").exists():
                        continue  # a subpackage the master never imported
                    stack.append(child_rel)
                elif entry.is_file():
                    yield self.shipped(child_rel, child)

    def _check_link(self, rel: str, path: Path) -> None:
        target = os.path.realpath(path)
        if not os.path.exists(target):
            raise ShipError(f"{rel} under the code root {self.root} is a broken symlink; remove it or list it in "
                            ".kannonignore")  # fmt: skip
        if not target.startswith(str(self.real) + os.sep):
            raise ShipError(f"{rel} under the code root {self.root} is a symlink to {target}, outside the root: only "
                            "links inside the root are followed. Copy it into the root, or list it in .kannonignore")


def _module_path(rel: str) -> str:
    """``a/b/c.py`` and ``a/b/c.cpython-312-x86_64-linux-gnu.so`` -> ``a/b/c``."""
    head, _, base = rel.rpartition("/")
    stem = base.split(".", 1)[0]
    return f"{head}/{stem}" if head else stem


def _ignore_specs(directory: Path) -> list[tuple[Path, pathspec.GitIgnoreSpec]]:
    out = []
    for name in IGNORE_FILES:
        try:
            lines = (directory / name).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        out.append((directory, pathspec.GitIgnoreSpec.from_lines(lines)))
    return out


def _installed_paths(root: Path) -> list[str]:
    """Where installed code lives: never shipped, even inside the root (a project's own .venv, say)."""
    paths = {sysconfig.get_path(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        # A prefix that contains the root (a container's /usr/local with the app in /usr/local/app) is not excluded.
        if not str(root).startswith(os.path.abspath(prefix) + os.sep):
            paths.add(prefix)
    for p in sys.path:  # site-packages/dist-packages anywhere (user site, other environments on PYTHONPATH)
        if Path(p).name in ("site-packages", "dist-packages"):
            paths.add(p)
    return sorted(os.path.abspath(p) for p in paths if p)


# -- the archive -------------------------------------------------------------------------------------------------
def build_archive(manifest: Manifest, max_bytes: int = DEFAULT_MAX_BYTES) -> Archive:
    """A deterministic tar.gz: sorted entries, fixed mtime/modes/owner, no directory entries, gzip header without
    name or time. Same files and contents give the same bytes (and name) whatever their mtimes, modes or order."""
    if not manifest.files:
        raise ShipError(f"nothing to ship from {manifest.root}: no loaded module of the project is under it; set "
                        "--code-root to the directory on sys.path that holds the project's packages")  # fmt: skip
    if manifest.size > max_bytes:
        largest = sorted(manifest.files, key=lambda f: (-f.size, f.arcname))[:5]
        listed = ", ".join(f"{f.arcname} ({_human(f.size)})" for f in largest)
        raise ShipError(f"the code to ship from {manifest.root} is {_human(manifest.size)}, over the "
                        f"{_human(max_bytes)} limit; largest files: {listed}. Exclude data with a .kannonignore "
                        "(gitignore syntax) or raise the limit")  # fmt: skip
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz, tarfile.open(
        fileobj=gz, mode="w", format=tarfile.PAX_FORMAT
    ) as tar:
        for f in manifest.files:
            data = f.path.read_bytes()
            info = tarfile.TarInfo(f.arcname)
            info.size, info.mtime = len(data), FIXED_MTIME
            info.mode = 0o755 if f.executable else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    return Archive(data, hashlib.sha256(data).hexdigest(), len(manifest.files), manifest.size)


def location_for(archive: Archive, workspace: str) -> str:
    return storage.join(workspace, "kannon", "code", archive.name)


def upload(archive: Archive, workspace: str) -> str:
    """Put the archive at ``<workspace>/kannon/code/<sha256>.tar.gz`` unless it is already there; return where."""
    location = location_for(archive, workspace)
    if not _exists(location, archive):
        storage.write_bytes(location, archive.data)
    return location


def _exists(location: str, archive: Archive) -> bool:
    # The name is the content's hash, so an object of that name is this archive (the child verifies it anyway).
    # A local copy is cheap to check, so a damaged one is replaced instead of failing every child.
    if storage.is_remote(location):
        return storage.exists(location)
    try:
        with open(location, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest() == archive.sha256
    except FileNotFoundError:
        return False


# -- the hand-off ------------------------------------------------------------------------------------------------
def spec_entry(archive: Archive, location: str) -> dict[str, Any]:
    """The hand-off spec's ``code`` field (``ship_child.SPEC_KEY``), read by ``ship_child.code_ref``. It is inside
    the hashed spec, so the child trusts the sha256 it names."""
    return {"location": location, "sha256": archive.sha256, "files": archive.files, "size": archive.size}


def spec_sys_path(sys_path: Sequence[str], code_root: Path) -> list[str]:
    """The spec's ``sys_path`` without the code root (and paths under it): the child imports that code from the
    archive, and ``handoff.import_modules`` would otherwise put the child's own (possibly stale) copy first."""
    root = os.path.abspath(code_root)
    return [p for p in sys_path if not (os.path.abspath(p) == root or os.path.abspath(p).startswith(root + os.sep))]


@dataclass(frozen=True)
class Shipment:
    """One build's shipped code: the archive, the code root it was taken from, and where it was uploaded."""

    archive: Archive
    code_root: Path
    location: str

    def spec_entry(self) -> dict[str, Any]:
        return spec_entry(self.archive, self.location)


def prepare(code_root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Archive:
    """collect + build_archive: ShipError (one line) when the code cannot be shipped."""
    return build_archive(collect(code_root), max_bytes=max_bytes)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
