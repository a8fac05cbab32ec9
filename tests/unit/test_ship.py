"""Code shipping, master side and the child's extraction rules (kannon.ship, kannon.ship_child; issue 15).

Projects are real files in tmp_path; "loaded modules" are module objects carrying the attributes the import system
sets (``__file__``, ``__path__``), passed explicitly so a test does not depend on what pytest happened to import.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import types
from pathlib import Path

import pytest

import kannon
from kannon import ship, ship_child, storage
from kannon.ship import ShipError


def write(path: Path, text: str = "x = 1\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def module(name: str, file: Path | None, package: bool = False) -> types.ModuleType:
    m = types.ModuleType(name)
    m.__file__ = str(file) if file else None
    if package:
        m.__path__ = [str(file.parent if file else "")]  # type: ignore[attr-defined]
    return m


def project(root: Path) -> dict[str, types.ModuleType]:
    """mypkg with a subpackage, data files, an unloaded sibling module and an unloaded subpackage."""
    pkg = root / "mypkg"
    write(pkg / "__init__.py", "")
    write(pkg / "tasks.py", "def hello():\n    return 'hello'\n")
    write(pkg / "lazy.py", "LAZY = 1\n")  # not imported by the master: a sibling the child may import lazily
    write(pkg / "sub" / "__init__.py", "")
    write(pkg / "sub" / "m.py", "M = 2\n")
    write(pkg / "data" / "table.csv", "a,b\n1,2\n")  # a plain data directory
    write(pkg / "sub" / "config.yaml", "k: v\n")
    write(pkg / "unused" / "__init__.py", "")  # a subpackage never imported
    write(pkg / "unused" / "big.bin", "0" * 100)
    return {
        "mypkg": module("mypkg", pkg / "__init__.py", package=True),
        "mypkg.tasks": module("mypkg.tasks", pkg / "tasks.py"),
        "mypkg.sub": module("mypkg.sub", pkg / "sub" / "__init__.py", package=True),
        "mypkg.sub.m": module("mypkg.sub.m", pkg / "sub" / "m.py"),
    }


def names(manifest: ship.Manifest) -> list[str]:
    return [f.arcname for f in manifest.files]


def test_collects_the_package_its_subpackage_and_data_but_not_kannon_or_installed_code(tmp_path: Path) -> None:
    modules = project(tmp_path)
    # an environment inside the root (a project's venv) and kannon itself are loaded but never shipped
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    write(tmp_path / "venv" / "pyvenv.cfg", "home = /usr/bin\n")
    modules["dep"] = module("dep", write(site / "dep" / "__init__.py"), package=True)
    modules["kannon"] = kannon
    modules["json"] = sys.modules["json"]
    manifest = ship.collect(tmp_path, modules)
    assert names(manifest) == [
        "mypkg/__init__.py", "mypkg/data/table.csv", "mypkg/lazy.py", "mypkg/sub/__init__.py",
        "mypkg/sub/config.yaml", "mypkg/sub/m.py", "mypkg/tasks.py",
    ]  # fmt: skip
    assert manifest.modules == ("mypkg", "mypkg.sub", "mypkg.sub.m", "mypkg.tasks")
    # with the real sys.modules and the repository as the root, kannon (under it) is still not shipped
    real = ship.collect(Path(kannon.__file__).parents[1])
    assert real.files and not [f for f in real.files if f.arcname.startswith("kannon/")]
    assert not [f for f in real.files if "site-packages" in f.arcname]


def test_the_default_code_root_is_the_directory_holding_the_top_level_package(tmp_path: Path) -> None:
    modules = project(tmp_path)
    assert ship.code_root_for("mypkg.sub.m", modules) == tmp_path
    single = {"script": module("script", write(tmp_path / "scripts" / "script.py"))}
    assert ship.code_root_for("script", single) == tmp_path / "scripts"
    with pytest.raises(ShipError, match="module nothere is not imported"):
        ship.code_root_for("nothere.x", modules)


def build_in(root: Path, order: list[str], mode: int, mtime: float) -> bytes:
    files = {"mypkg/__init__.py": "", "mypkg/a.py": "A = 1\n", "mypkg/b.py": "B = 2\n", "mypkg/d/x.txt": "data\n"}
    for rel in order:
        p = write(root / rel, files[rel])
        p.chmod(mode)
        os.utime(p, (mtime, mtime))
    mods = {"mypkg": module("mypkg", root / "mypkg" / "__init__.py", package=True)}
    return ship.build_archive(ship.collect(root, mods)).data


def test_archives_are_byte_identical_whatever_the_mtimes_modes_and_creation_order(tmp_path: Path) -> None:
    order = ["mypkg/__init__.py", "mypkg/a.py", "mypkg/b.py", "mypkg/d/x.txt"]
    first = build_in(tmp_path / "one", order, 0o644, 1_000_000)
    again = build_in(tmp_path / "one", order, 0o644, 1_000_000)
    other = build_in(tmp_path / "two", list(reversed(order)), 0o664, 1_900_000_000)
    assert first == again == other
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(order)
    assert {(m.mtime, m.mode, m.uid, m.gid, m.uname, m.gname) for m in members} == {(ship.FIXED_MTIME, 0o644, 0, 0,
                                                                                     "", "")}  # fmt: skip
    assert first[4:8] == b"\0\0\0\0"  # the gzip header's mtime
    # the executable bit is content (scripts), so it changes the archive
    assert build_in(tmp_path / "three", order, 0o755, 1_000_000) != first


def test_ignore_files_caches_virtualenvs_and_hidden_paths_are_not_shipped(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    write(repo / ".gitignore", "*.log\n/src/mypkg/generated/\n")  # the repo's top, above the code root
    root = repo / "src"
    modules = project(root)
    pkg = root / "mypkg"
    write(pkg / "run.log", "noise")
    write(pkg / "generated" / "out.txt", "made by a build")
    write(pkg / ".kannonignore", "*.csv\n!keep.csv\n")
    write(pkg / "data" / "keep.csv", "kept")
    write(pkg / "data" / ".gitignore", "scratch/\n")
    write(pkg / "data" / "scratch" / "tmp.txt", "scratch")
    write(pkg / "__pycache__" / "tasks.cpython-311.pyc", "bytecode")
    write(pkg / "old.pyc", "bytecode")
    write(pkg / "env" / "pyvenv.cfg", "home = /usr/bin\n")
    write(pkg / "env" / "lib" / "thing.py")
    write(pkg / ".secret", "token")
    write(pkg / ".hidden" / "a.txt", "hidden")
    write(pkg / "ignored_but_loaded.py")  # a loaded module is shipped even if an ignore file matches it
    write(pkg / ".kannonignore", "*.csv\n!keep.csv\nignored_but_loaded.py\n")
    modules["mypkg.ignored_but_loaded"] = module("mypkg.ignored_but_loaded", pkg / "ignored_but_loaded.py")
    got = names(ship.collect(root, modules))
    assert got == [
        "mypkg/__init__.py", "mypkg/data/keep.csv", "mypkg/ignored_but_loaded.py", "mypkg/lazy.py",
        "mypkg/sub/__init__.py", "mypkg/sub/config.yaml", "mypkg/sub/m.py", "mypkg/tasks.py",
    ]  # fmt: skip


def test_an_oversized_project_is_refused_naming_its_largest_files(tmp_path: Path) -> None:
    modules = project(tmp_path)
    write(tmp_path / "mypkg" / "data" / "huge.parquet", "0" * 5000)
    write(tmp_path / "mypkg" / "data" / "big.json", "0" * 3000)
    manifest = ship.collect(tmp_path, modules)
    with pytest.raises(ShipError) as e:
        ship.build_archive(manifest, max_bytes=4096)
    text = str(e.value)
    assert "over the 4.0 KiB limit" in text and ".kannonignore" in text
    assert text.index("mypkg/data/huge.parquet (4.9 KiB)") < text.index("mypkg/data/big.json (2.9 KiB)")
    assert ship.build_archive(manifest).files == len(manifest.files)  # the default cap (50 MiB) takes it


def test_symlinks_inside_the_root_are_followed_and_outside_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    modules = project(root)
    (root / "mypkg" / "shared.csv").symlink_to(root / "mypkg" / "data" / "table.csv")
    files = {f.arcname: f for f in ship.collect(root, modules).files}
    assert files["mypkg/shared.csv"].size == len("a,b\n1,2\n")  # shipped as a regular file
    write(tmp_path / "outside" / "secret.txt", "not the project's")
    (root / "mypkg" / "leak").symlink_to(tmp_path / "outside")
    with pytest.raises(ShipError, match=r"mypkg/leak .* is a symlink to .*outside, outside the root"):
        ship.collect(root, modules)
    write(root / "mypkg" / ".kannonignore", "leak\n")  # an ignored link is not looked at
    assert "mypkg/leak/secret.txt" not in names(ship.collect(root, modules))


def test_upload_writes_once_per_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[str] = []
    real_write = storage.write_bytes
    monkeypatch.setattr(storage, "write_bytes", lambda loc, data: (writes.append(loc), real_write(loc, data)))
    modules = project(tmp_path / "p")
    archive = ship.build_archive(ship.collect(tmp_path / "p", modules))
    ws = str(tmp_path / "ws")
    location = ship.upload(archive, ws)
    assert location == str(tmp_path / "ws" / "kannon" / "code" / f"{archive.sha256}.tar.gz")
    assert Path(location).read_bytes() == archive.data
    assert ship.upload(archive, ws) == location and writes == [location]  # the second upload writes nothing
    Path(location).write_bytes(b"damaged")  # a local copy that is not this content is replaced
    ship.upload(archive, ws)
    assert writes == [location, location] and Path(location).read_bytes() == archive.data
    write(tmp_path / "p" / "mypkg" / "tasks.py", "def hello():\n    return 'edited'\n")
    edited = ship.build_archive(ship.collect(tmp_path / "p", modules))
    assert edited.sha256 != archive.sha256
    assert ship.upload(edited, ws).endswith(f"{edited.sha256}.tar.gz") and len(writes) == 3


def test_summary_and_spec_entry(tmp_path: Path) -> None:
    archive = ship.build_archive(ship.collect(tmp_path, project(tmp_path)))
    assert archive.summary().startswith(f"shipped code: 7 files, {archive.size} B (")
    assert archive.summary().endswith(f"sha256 {archive.sha256[:12]}")
    entry = ship.spec_entry(archive, "s3://b/ws/kannon/code/x.tar.gz")
    assert ship_child.code_ref({"code": entry}) == ("s3://b/ws/kannon/code/x.tar.gz", archive.sha256)
    assert ship_child.code_ref({}) is None
    with pytest.raises(ShipError, match="'code' field must be an object"):
        ship_child.code_ref({"code": {"location": 1}})
    assert ship.spec_sys_path(["/p", "/p/sub", "/other", "/pp"], Path("/p")) == ["/other", "/pp"]


def tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return buf.getvalue()


@pytest.mark.parametrize("name", ["../escape.py", "/abs/path.py", "a/../../b.py", "./x.py"])
def test_extraction_refuses_paths_outside_the_directory(tmp_path: Path, name: str) -> None:
    with pytest.raises(ShipError, match="unsafe path"):
        ship_child.safe_extract(tar_with(tarfile.TarInfo(name), b"x"), tmp_path / "dest")
    assert not (tmp_path / "escape.py").exists() and not (tmp_path / "b.py").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.CHRTYPE])
def test_extraction_refuses_anything_but_regular_files(tmp_path: Path, kind: bytes) -> None:
    info = tarfile.TarInfo("pkg/link")
    info.type, info.linkname = kind, "/etc/passwd"
    with pytest.raises(ShipError, match="not a regular file"):
        ship_child.safe_extract(tar_with(info), tmp_path / "dest")
    assert not (tmp_path / "dest" / "pkg" / "link").exists()


def test_stale_modules_are_those_the_archive_provides_imported_from_elsewhere(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    extract = tmp_path / "x"
    write(extract / "shippedpkg" / "__init__.py", "")
    write(extract / "shippedpkg" / "mod.py")
    write(extract / "nsdir" / "inner.py")  # a namespace package
    write(extract / "shippedpkg" / "data.txt", "not a module")
    assert ship_child.provided_modules(extract) == {"shippedpkg", "shippedpkg.mod", "nsdir", "nsdir.inner"}
    monkeypatch.setitem(sys.modules, "shippedpkg", module("shippedpkg", extract / "shippedpkg" / "__init__.py", True))
    monkeypatch.setitem(sys.modules, "shippedpkg.mod", module("shippedpkg.mod", tmp_path / "old" / "shippedpkg" /
                                                              "mod.py"))  # fmt: skip
    monkeypatch.setitem(sys.modules, "nsdir", module("nsdir", None))
    assert ship_child.stale_modules(extract) == ["nsdir", "shippedpkg.mod"]


def test_extraction_refuses_duplicates_and_reports_an_unwritable_cache(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for _ in range(2):
            info = tarfile.TarInfo("pkg/a.py")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ShipError, match="lists 'pkg/a.py' twice"):
        ship_child.safe_extract(buf.getvalue(), tmp_path / "dest")
    with pytest.raises(ShipError, match="not a valid kannon archive"):
        ship_child.safe_extract(b"\x1f\x8b\x08garbage", tmp_path / "dest2")
    blocker = write(tmp_path / "file", "a file where the cache directory should be")
    with pytest.raises(ShipError, match="cannot create the code cache: .* Set KANNON_CODE_CACHE"):
        ship_child.fetch_and_activate("/nowhere.tar.gz", "0" * 64, cache_dir=blocker / "cache")
