"""Issue 12 on the real Docker engine: a credential passed with env_to_inherit reaches the bullet's process intact,
but never the container's config (``docker inspect``), and no file of the run keeps it afterwards."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from kannon.backends.base import RunInfo
from kannon.backends.docker import LABEL_FAMILY, LABEL_RUN, DockerExecutor, container_name
from kannon.scheduler import Kannon
from tests.e2e.docker.support import ScriptExecutor, python_volumes, script_launch
from tests.support.events import Recorder
from tests.support.procs import wait_until
from tests.support.secrettasks import EnvProbe

pytestmark = pytest.mark.docker

SECRET_NAME = "KANNON_TEST_SECRET_TOKEN"
SHADOWED = "KANNON_TEST_SHADOWED"


def test_an_inherited_secret_reaches_the_bullet_but_not_the_containers_config(
    engine: Any, image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv(SECRET_NAME, secret)
    monkeypatch.setenv(SHADOWED, f"master-{uuid.uuid4().hex}")  # inherited, but the task's Hints.env names it too
    started, release = tmp_path / "started", tmp_path / "release"
    tag = uuid.uuid4().hex
    task = EnvProbe(names=[SECRET_NAME, SHADOWED], tag=tag, started_file=str(started), wait_file=str(release))
    task = task.with_hints(env={SHADOWED: "from-hints"})
    kannon = Kannon(executor=DockerExecutor(image, volumes=python_volumes()), env_to_inherit=[SECRET_NAME, SHADOWED])
    outcome: dict[str, Any] = {}

    def build() -> None:
        try:
            outcome["result"] = kannon.build(task)
        except BaseException as e:
            outcome["error"] = e

    builder = threading.Thread(target=build, daemon=True)
    builder.start()
    try:
        wait_until(lambda: started.exists() or "error" in outcome, timeout=180, what="the bullet to start")
        assert "error" not in outcome, outcome.get("error")
        (container,) = engine.containers.list(filters={"label": f"{LABEL_FAMILY}=EnvProbe", "status": "running"})
        inspected = json.dumps(engine.api.inspect_container(container.id))
        value_shown, name_shown = secret in inspected, SECRET_NAME in inspected  # never print the value itself
        assert not value_shown, "the inherited value is in `docker inspect` of the running child"
        assert not name_shown, "the inherited variable's name is in `docker inspect` of the running child"
        run_id = container.labels[LABEL_RUN]
        # While it runs, the file holding it is the container user's alone.
        (mount,) = [m for m in container.attrs["Mounts"] if m["Destination"] == "/run/kannon/secrets.json"]
        assert not mount["RW"]
        mode = os.stat(mount["Source"])
        assert stat.S_IMODE(mode.st_mode) == 0o600 and mode.st_uid == os.getuid()
    finally:
        release.touch()
        builder.join(timeout=300)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.ok and result.run_id == run_id
    seen = task.output().load()
    assert seen[SECRET_NAME] == secret, "the bullet did not receive the inherited value intact"
    assert seen[SHADOWED] == "from-hints"  # a Hints.env name wins over an inherited one
    assert seen["KANNON_SECRETS_FILE"] is None  # the pointer is gone from the task's environment
    run_dir = Path(result.run_dir or "")
    assert not (run_dir / "secrets").exists()
    leaks = [p for p in run_dir.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaks == []


def test_a_container_user_other_than_the_masters_gets_the_file_as_its_own(
    engine: Any, image: str, run_id: str, tmp_path: Path
) -> None:
    """The file is mode 0600 and owned by the container's uid (the master here is root, who may chown it): the
    child, running as that uid, reads it; the master's own uid would not be able to hand it over otherwise."""
    if os.geteuid() != 0:
        pytest.skip("only a root master can give the secrets file to another uid")
    tmp_path.chmod(0o711)  # pytest makes it owner-only; the other uid must traverse it
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    code = ("import hashlib, os; from kannon import secretfile; st = os.stat(os.environ['KANNON_SECRETS_FILE']); "
            "secretfile.load(); "
            f"print('sha', hashlib.sha256(os.environ[{SECRET_NAME!r}].encode()).hexdigest(), "
            "os.environ.get('KANNON_SECRETS_FILE'), os.getuid(), st.st_uid, oct(st.st_mode & 0o777), flush=True)")
    ex = ScriptExecutor(image, volumes=python_volumes(), python=sys.executable, working_dir=tmp_path,
                        user="12345:23456")  # fmt: skip
    rec = Recorder()
    ex.start(RunInfo(run_id, tmp_path / "run", secrets={SECRET_NAME: secret}), rec)
    launch = script_launch(run_id, tmp_path, 1, code)
    host_file = tmp_path / "run" / "secrets" / f"{container_name(run_id, launch.task_id, 1)}.json"
    ex.launch(launch)
    fin = rec.wait_finished(launch.key)
    ex.close()
    assert fin.ok, fin
    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert launch.log_path.read_text().split() == ["sha", digest, "None", "12345", "12345", "0o600"]
    assert not host_file.exists() and not host_file.parent.exists()

