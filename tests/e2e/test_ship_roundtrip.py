"""Code shipping end to end: the master collects, archives and uploads; a REAL child interpreter, whose sys.path does
not contain the project, fetches, verifies, extracts and imports from the archive (issue 15).

Each child is ``python -c`` in a directory outside the project; a control run proves the project is not importable
there without the archive.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kannon import exitcodes, handoff, ship, ship_child, storage

CHILD = textwrap.dedent(
    """
    import sys
    from kannon import exitcodes
    from kannon.ship_child import ShipError, fetch_and_activate, stale_modules
    location, sha, cache = sys.argv[1:4]
    try:
        extract = fetch_and_activate(location, sha, cache_dir=__import__("pathlib").Path(cache))
    except ShipError as e:
        assert "shipme" not in sys.modules
        print("refused:", e)
        sys.exit(exitcodes.BAD_SPEC)
    assert not stale_modules(extract)
    import shipme.tasks
    assert shipme.tasks.__file__.startswith(str(extract)), shipme.tasks.__file__
    print(shipme.tasks.run())
    assert not stale_modules(extract)
    """
)


def make_project(root: Path, greeting: str = "hello") -> dict[str, types.ModuleType]:
    pkg = root / "shipme"
    (pkg / "sub").mkdir(parents=True, exist_ok=True)
    (pkg / "data").mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("import os\nif os.environ.get('SHIPME_MARK'):\n"
                                     "    open(os.environ['SHIPME_MARK'], 'w').close()  # proves an import happened\n")
    (pkg / "tasks.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        from shipme.sub.words import shout
        def run():
            table = (Path(__file__).parent / "data" / "table.csv").read_text().strip()
            return shout("{greeting}") + " " + table
    """))  # fmt: skip
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "words.py").write_text("def shout(s):\n    return s.upper()\n")
    (pkg / "data" / "table.csv").write_text("a,b")

    def mod(name: str, file: Path, package: bool = False) -> types.ModuleType:
        m = types.ModuleType(name)
        m.__file__ = str(file)
        if package:
            m.__path__ = [str(file.parent)]  # type: ignore[attr-defined]
        return m

    return {"shipme": mod("shipme", pkg / "__init__.py", True), "shipme.tasks": mod("shipme.tasks", pkg / "tasks.py"),
            "shipme.sub": mod("shipme.sub", pkg / "sub" / "__init__.py", True),
            "shipme.sub.words": mod("shipme.sub.words", pkg / "sub" / "words.py")}  # fmt: skip


def child(location: str, sha: str, cache: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    full = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", CHILD, location, sha, str(cache)], cwd=cwd, env={**full, **env},
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def ship_project(src: Path, modules: dict[str, types.ModuleType], workspace: str) -> tuple[str, ship.Archive]:
    archive = ship.build_archive(ship.collect(src, modules))
    return ship.upload(archive, workspace), archive


def test_a_child_without_the_code_imports_and_runs_the_shipped_package(tmp_path: Path) -> None:
    src, elsewhere = tmp_path / "src", tmp_path / "elsewhere"
    modules = make_project(src)
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    control = subprocess.run([sys.executable, "-c", "import shipme"], cwd=elsewhere, env=env, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
    assert control.returncode != 0 and "No module named 'shipme'" in control.stderr
    location, archive = ship_project(src, modules, str(tmp_path / "ws"))
    done = child(location, archive.sha256, tmp_path / "cache", elsewhere)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "HELLO a,b"  # a subpackage module and a package data file, from the archive
    # the user edits a module: a new hash, and the next child runs the edited code
    (src / "shipme" / "sub" / "words.py").write_text("def shout(s):\n    return s.upper() + '!'\n")
    location2, edited = ship_project(src, modules, str(tmp_path / "ws"))
    assert edited.sha256 != archive.sha256 and location2 != location
    again = child(location2, edited.sha256, tmp_path / "cache", elsewhere)
    assert again.returncode == 0 and again.stdout.strip() == "HELLO! a,b", again.stderr


def test_a_tampered_or_missing_archive_is_refused_before_any_user_import(tmp_path: Path) -> None:
    src = tmp_path / "src"
    location, archive = ship_project(src, make_project(src, "original"), str(tmp_path / "ws"))
    # an archive of other code written under the original's name (a compromised or confused workspace)
    other_src = tmp_path / "other"
    other = ship.build_archive(ship.collect(other_src, make_project(other_src, "evil")))
    Path(location).write_bytes(other.data)
    mark = tmp_path / "imported"
    bad = child(location, archive.sha256, tmp_path / "cache", tmp_path / "cwd", SHIPME_MARK=str(mark))
    assert bad.returncode == exitcodes.BAD_SPEC, bad.stdout + bad.stderr
    assert f"has sha256 {other.sha256}, not {archive.sha256}" in bad.stdout and "altered or replaced" in bad.stdout
    assert not mark.exists() and not (tmp_path / "cache" / archive.sha256).exists()
    Path(location).unlink()
    gone = child(location, archive.sha256, tmp_path / "cache", tmp_path / "cwd", SHIPME_MARK=str(mark))
    assert gone.returncode == exitcodes.BAD_SPEC and "does not exist" in gone.stdout, gone.stdout + gone.stderr
    assert not mark.exists()
    # a good archive still runs with the marker set: the marker does prove an import
    location, archive = ship_project(src, make_project(src, "original"), str(tmp_path / "ws"))
    ok = child(location, archive.sha256, tmp_path / "cache", tmp_path / "cwd", SHIPME_MARK=str(mark))
    assert ok.returncode == 0 and mark.exists(), ok.stderr


def test_a_cached_extraction_is_reused_without_fetching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    location, archive = ship_project(src, make_project(src), str(tmp_path / "ws"))
    reads: list[str] = []
    real_read = storage.read_bytes
    monkeypatch.setattr(storage, "read_bytes", lambda loc, *a, **k: (reads.append(loc), real_read(loc, *a, **k))[1])
    monkeypatch.setattr(sys, "path", list(sys.path))
    first = ship_child.fetch_and_activate(location, archive.sha256, tmp_path / "cache")
    second = ship_child.fetch_and_activate(location, archive.sha256, tmp_path / "cache")
    assert first == second == tmp_path / "cache" / archive.sha256 and reads == [location]
    assert sys.path[0] == str(first) and sys.path.count(str(first)) == 1
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [archive.sha256]  # no temporary leftovers
    # across processes too: with the archive gone, a child on this node still runs from the cache
    Path(location).unlink()
    done = child(location, archive.sha256, tmp_path / "cache", tmp_path / "cwd")
    assert done.returncode == 0 and done.stdout.strip() == "HELLO a,b", done.stdout + done.stderr


def test_concurrent_children_extracting_one_archive_share_one_extraction(tmp_path: Path) -> None:
    src = tmp_path / "src"
    location, archive = ship_project(src, make_project(src), str(tmp_path / "ws"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, location, archive.sha256, str(tmp_path / "cache")],
                              cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(6)]  # fmt: skip
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert [r[0] for r in results] == [0] * 6, results
    assert {r[1].strip() for r in results} == {"HELLO a,b"}
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [archive.sha256]


def test_a_module_already_imported_from_elsewhere_is_reported_stale(tmp_path: Path) -> None:
    """A warm process (fork server, reused pod) that imported the project's code before shipping must start cold."""
    src = tmp_path / "src"
    location, archive = ship_project(src, make_project(src), str(tmp_path / "ws"))
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(src)!r})
        import shipme.sub.words                      # the warm process's own (older) copy
        from kannon.ship_child import fetch_and_activate, stale_modules
        print(stale_modules(fetch_and_activate({location!r}, {archive.sha256!r}, __import__("pathlib").Path({
            str(tmp_path / "cache")!r}))))
    """)  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['shipme', 'shipme.sub', 'shipme.sub.words']"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A local moto S3 server (127.0.0.1) that a child process can reach too; AWS_* variables point boto3 at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    import boto3

    boto3.client("s3").create_bucket(Bucket="kannon-ship")
    try:
        yield "s3://kannon-ship/ws"
    finally:
        server.stop()


def test_an_s3_workspace_carries_the_archive_end_to_end(tmp_path: Path, s3: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import boto3

    src = tmp_path / "src"
    modules = make_project(src)
    writes: list[str] = []
    real_write = storage.write_bytes
    monkeypatch.setattr(storage, "write_bytes", lambda loc, data: (writes.append(loc), real_write(loc, data)))
    location, archive = ship_project(src, modules, s3)
    assert location == f"{s3}/kannon/code/{archive.sha256}.tar.gz"
    assert ship_project(src, modules, s3)[0] == location and writes == [location]  # unchanged code: no upload
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="kannon-ship")["Contents"]]
    assert keys == [f"ws/kannon/code/{archive.sha256}.tar.gz"]
    done = child(location, archive.sha256, tmp_path / "cache", tmp_path / "cwd")
    assert done.returncode == 0 and done.stdout.strip() == "HELLO a,b", done.stdout + done.stderr
    storage.write_bytes(location, archive.data[:-10])  # truncated in the bucket
    bad = child(location, archive.sha256, tmp_path / "cache2", tmp_path / "cwd")
    assert bad.returncode == exitcodes.BAD_SPEC and "altered or replaced" in bad.stdout, bad.stdout + bad.stderr
    boto3.client("s3").delete_object(Bucket="kannon-ship", Key=f"ws/kannon/code/{archive.sha256}.tar.gz")
    gone = child(location, archive.sha256, tmp_path / "cache3", tmp_path / "cwd")
    assert gone.returncode == exitcodes.BAD_SPEC and "does not exist" in gone.stdout, gone.stdout + gone.stderr


def test_a_warm_process_with_stale_modules_restarts_cold_and_runs_the_shipped_code(tmp_path: Path) -> None:
    src = tmp_path / "src"
    location, archive = ship_project(src, make_project(src), str(tmp_path / "ws"))
    (src / "shipme" / "sub" / "words.py").write_text("def shout(s):\n    return 'STALE'\n")  # the warm copy differs
    warm = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(src)!r})
        import shipme.tasks                          # warm: imported before the task arrived
        from kannon.ship_child import fetch_and_activate, restart_cold, stale_modules
        extract = fetch_and_activate({location!r}, {archive.sha256!r}, __import__("pathlib").Path({
            str(tmp_path / "cache")!r}))
        if stale_modules(extract):
            print("restarting", flush=True)
            restart_cold(["-c", {CHILD!r}, {location!r}, {archive.sha256!r}, {str(tmp_path / "cache")!r}])
        print(shipme.tasks.run())
    """)  # fmt: skip
    done = subprocess.run([sys.executable, "-c", warm], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["restarting", "HELLO", "a,b"]  # not "STALE a,b"
    # a restarted process that still sees stale modules is refused instead of looping
    again = subprocess.run([sys.executable, "-c", "from kannon.ship_child import restart_cold; restart_cold(['-V'])"],
                           env={**os.environ, ship_child.COLD_ENV: "1"}, capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert again.returncode != 0 and "already imported at interpreter start-up" in again.stderr


def test_a_gs_workspace_carries_the_archive_once_per_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """gs:// through the real google-cloud-storage client against a local GCS emulator (as in
    test_object_store_specs.py); the child process reaches it through STORAGE_EMULATOR_HOST."""
    import socket

    from gcp_storage_emulator.server import create_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="kannon-ship-gcs")
    server.start()
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        writes: list[str] = []
        real_write = storage.write_bytes
        monkeypatch.setattr(storage, "write_bytes", lambda loc, data: (writes.append(loc), real_write(loc, data)))
        src = tmp_path / "src"
        modules = make_project(src)
        location, archive = ship_project(src, modules, "gs://kannon-ship-gcs/ws")
        assert location == f"gs://kannon-ship-gcs/ws/kannon/code/{archive.sha256}.tar.gz"
        assert ship_project(src, modules, "gs://kannon-ship-gcs/ws")[0] == location and writes == [location]
        done = child(location, archive.sha256, tmp_path / "cache", tmp_path / "cwd")
        assert done.returncode == 0 and done.stdout.strip() == "HELLO a,b", done.stdout + done.stderr
    finally:
        server.stop()


WIRED = "code" in inspect.signature(handoff.Encoder.spec).parameters


@pytest.mark.skipif(not WIRED, reason="needs the hand-off wiring of docs/code-shipping.md (Encoder.spec(code=...))")
def test_the_child_entrypoint_runs_a_bullet_from_shipped_code(tmp_path: Path) -> None:
    """`python -m kannon run-task` with a spec carrying the archive: runs without the project on its path (control:
    exit 8 without it), refuses a tampered archive (exit 3), and a warm process holding stale copies restarts cold."""
    src, ws, cwd = tmp_path / "src", str(tmp_path / "ws"), tmp_path / "cwd"
    (src / "wirepkg" / "sub").mkdir(parents=True)
    cwd.mkdir()
    (src / "wirepkg" / "__init__.py").write_text("")
    (src / "wirepkg" / "sub" / "__init__.py").write_text("")
    (src / "wirepkg" / "sub" / "util.py").write_text("def word():\n    return 'v1'\n")
    (src / "wirepkg" / "flow.py").write_text(textwrap.dedent("""
        import luigi, kannon
        from wirepkg.sub.util import word
        class Hello(kannon.TaskOnBullet):
            name = luigi.Parameter()
            def run(self):
                self.dump(word() + ':' + self.name)
    """))  # fmt: skip
    sys.path.insert(0, str(src))
    try:
        flow = importlib.import_module("wirepkg.flow")
    finally:
        sys.path.remove(str(src))
    root = ship.code_root_for("wirepkg.flow")
    archive = ship.build_archive(ship.collect(root))
    location = ship.upload(archive, ws)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "KANNON_CODE_CACHE": str(tmp_path / "c1")}

    def spec(task: Any, code: bool) -> list[str]:
        data = handoff.Encoder().spec(task, "run", handoff.luigi_config_snapshot(),
                                      ship.spec_sys_path([str(src)], root),
                                      **({"code": ship.spec_entry(archive, location)} if code else {}))  # fmt: skip
        path = tmp_path / f"{task.make_unique_id()}-{code}.json"
        path.write_bytes(data)
        return list(handoff.child_args(str(path), task.make_unique_id(), hashlib.sha256(data).hexdigest()))

    task = flow.Hello(name="x", workspace_directory=ws)
    args = spec(task, True)
    done = subprocess.run([sys.executable, "-m", "kannon", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0 and task.output().load() == "v1:x", done.stderr[-2000:]
    other = flow.Hello(name="y", workspace_directory=ws)
    control = subprocess.run([sys.executable, "-m", "kannon", *spec(other, False)], cwd=cwd, env=env,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert control.returncode == exitcodes.IMPORT_FAILED, control.stderr[-2000:]
    Path(location).write_bytes(b"not the archive")
    bad = subprocess.run([sys.executable, "-m", "kannon", *args], cwd=cwd, env={**env, "KANNON_CODE_CACHE":
                         str(tmp_path / "c2")}, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == exitcodes.BAD_SPEC and "altered or replaced" in bad.stderr, bad.stderr[-2000:]
    Path(location).write_bytes(archive.data)
    (src / "wirepkg" / "sub" / "util.py").write_text("def word():\n    return 'STALE'\n")
    task.output().remove()
    warm = (f"import sys; sys.path.insert(0, {str(src)!r}); import wirepkg.flow; from kannon import child; "
            f"sys.exit(child.main({args[1:]!r}))")  # fmt: skip
    restarted = subprocess.run([sys.executable, "-c", warm], cwd=cwd, env=env, capture_output=True, text=True,
                               timeout=120)  # fmt: skip
    assert restarted.returncode == 0 and task.output().load() == "v1:x", restarted.stderr[-2000:]
