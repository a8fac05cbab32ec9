"""The child's id-mismatch reason with and without shipped code (issue 15): with the code shipped, master and child
run the same code, so a differing unique id means the environment (a dependency) differs; without it, the reason
suggests ``--ship-code``. A parameter whose serialization reads an environment variable stands in for a dependency
whose version differs between master and image."""

from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import sys
from pathlib import Path

from kannon import exitcodes, handoff, ship

FLOW = """
import os
import luigi
import kannon

class FlavouredParameter(luigi.Parameter):
    def serialize(self, x):
        return os.environ.get("SHIPMSG_FLAVOUR", "") + str(x)

class Flavoured(kannon.TaskOnBullet):
    name = FlavouredParameter()

    def run(self):
        self.dump(self.name)
"""


def test_an_id_mismatch_names_a_dependency_with_shipped_code_and_suggests_ship_code_without(tmp_path: Path) -> None:
    src, ws = tmp_path / "src", str(tmp_path / "ws")
    (src / "shipmsg").mkdir(parents=True)
    (src / "shipmsg" / "__init__.py").write_text("")
    (src / "shipmsg" / "flow.py").write_text(FLOW)
    sys.path.insert(0, str(src))
    try:
        flow = importlib.import_module("shipmsg.flow")
    finally:
        sys.path.remove(str(src))
    root = ship.code_root_for("shipmsg.flow")
    archive = ship.build_archive(ship.collect(root))
    location = ship.upload(archive, ws)
    task = flow.Flavoured(name="x", workspace_directory=ws)
    env = {**os.environ, "SHIPMSG_FLAVOUR": "other-", "KANNON_CODE_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # fmt: skip

    def child(code: bool) -> subprocess.CompletedProcess[str]:
        data = handoff.Encoder().spec(task, "run", handoff.luigi_config_snapshot(), [str(src)],
                                      code=ship.spec_entry(archive, location) if code else None,
                                      code_root=str(root) if code else None)  # fmt: skip
        path = tmp_path / f"spec-{code}.json"
        path.write_bytes(data)
        args = handoff.child_args(str(path), task.make_unique_id(), hashlib.sha256(data).hexdigest())
        return subprocess.run([sys.executable, "-m", "kannon", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120, check=False)  # fmt: skip

    shipped = child(True)
    assert shipped.returncode == exitcodes.ID_MISMATCH, shipped.stderr[-2000:]
    assert "a dependency version differs between the master and the image" in shipped.stderr, shipped.stderr[-2000:]
    assert "--ship-code" not in shipped.stderr
    plain = child(False)
    assert plain.returncode == exitcodes.ID_MISMATCH, plain.stderr[-2000:]
    assert "--ship-code sends the master's code with the run" in plain.stderr, plain.stderr[-2000:]
    assert "dependency version differs" not in plain.stderr
