"""Hostile parameters reach real children intact and never a shell; an altered spec is refused before any module it
names is imported."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import kannon
from kannon import handoff, speccrypt
from kannon.backends.base import Executor, RunInfo
from kannon.backends.docker import DockerExecutor
from kannon.backends.local import LocalExecutor
from kannon.events import Event
from kannon.handoff import unique_id
from kannon.result import KannonBuildError, Status
from kannon.scheduler import Kannon
from kannon.testing import KubeEmulator
from tests.e2e.docker.support import python_volumes
from tests.faults import ledger
from tests.faults.figures import Figures
from tests.faults.harness import PY, REPO
from tests.faults.test_child_faults import k8s_executor
from tests.support.services import TEST_IMAGE as IMAGE


def hostile_values(canary: Path) -> list[str]:
    c = str(canary)
    return [
        f"; touch {c} #",
        f"$(touch {c})",
        f"`touch {c}`",
        f"| touch {c}",
        f"&& touch {c} &",
        f"' ; touch {c} ; echo '",
        f'" ; touch {c} ; echo "',
        "back\\slash \\n \\\\ and $HOME ${PATH} %s %n {0} \x1b[31mred\x1b[0m",
        "line one\nline two\r\nline three\n",
        "--spec /etc/passwd --task-id 0 --sha256 0",
        "  leading and trailing spaces\t",
        "ünïcödé 日本語 🚀 \u202eRTL\u202c \u200bzero-width",
        "nul\x00inside",
        "*?[a-z] ~root !! #",
        # more than Linux's 128 KiB limit on one argv/env string, with every metacharacter in it
        "".join(f"{i:06d};|&$(`)'\"\n\\<>" for i in range(10_000)),
    ]


def echo_dag(values: list[str]) -> tuple[Any, list[Any]]:
    echoes = [ledger.Echo(value=v, note=v[::-1][:140_000]) for v in values]
    return ledger.Collect(parents=echoes), echoes


def check_arrived(result: Any, echoes: list[Any], values: list[str], canary: Path) -> None:
    assert result.ok, [r.describe() for r in result.failed]
    for task, value in zip(echoes, values, strict=True):
        got = task.output().load()
        assert got == {"value": value, "note": value[::-1][:140_000], "run_id": result.run_id}
    assert not canary.exists(), "a parameter reached a shell"
    assert len(values[-1]) > 128 * 1024


def run_hostile(tmp_path: Path, executor: Executor, figures: Figures, backend: str, **kannon_args: Any) -> None:
    canary = tmp_path / "pwned"
    values = hostile_values(canary)
    root, echoes = echo_dag(values)
    result = Kannon(executor=executor, **kannon_args).build(root)
    check_arrived(result, echoes, values, canary)
    figures.fault(f"hostile parameter values carried intact ({backend})", len(values))


@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_hostile_values_arrive_intact_local(tmp_path: Path, figures: Figures, mode: str) -> None:
    run_hostile(tmp_path, LocalExecutor(mode=mode, max_workers=4), figures, f"local {mode}")  # type: ignore[arg-type]


@pytest.mark.k8s
def test_hostile_values_arrive_intact_kubernetes_emulator(tmp_path: Path, figures: Figures,
                                                          kube: KubeEmulator) -> None:  # fmt: skip
    run_hostile(tmp_path, k8s_executor(kube, tmp_path), figures, "kubernetes emulator", max_parallel=6)
    for job in kube.jobs().values():
        container = job["spec"]["template"]["spec"]["containers"][0]
        argv = " ".join(container["command"] + container.get("args", []))
        assert "touch" not in argv and "pwned" not in argv  # values travel in the spec, never on a command line


@pytest.mark.docker
def test_hostile_values_arrive_intact_docker(tmp_path: Path, figures: Figures, docker_engine: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    executor = DockerExecutor(IMAGE, volumes=python_volumes(), python=PY, environment={"PYTHONPATH": str(REPO)})
    run_hostile(tmp_path, executor, figures, "docker", max_parallel=4)


# -- altered specs ------------------------------------------------------------------------------------------------
VICTIM = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")

class Echo:  # what the altered spec asks for
    pass
"""


def victim_module(tmp_path: Path) -> tuple[str, Path, Path]:
    """A module that leaves a marker file when imported — the proof of whether a child imported it."""
    directory = tmp_path / "victim"
    directory.mkdir()
    marker = tmp_path / "victim-was-imported"
    name = f"faults_victim_{os.getpid()}_{abs(hash(str(tmp_path))) % 10**8}"
    (directory / f"{name}.py").write_text(VICTIM.format(marker=str(marker)))
    return name, directory, marker


class Tamperer:
    """Rewrites each bullet's spec in the run directory after the master wrote it and before the child reads it
    (``kannon_task_start`` comes between the two), pointing it at the victim module."""

    def __init__(self, module: str, directory: Path) -> None:
        self.module, self.directory = module, directory
        self.run_dir: Path | None = None
        self.key = ""
        self.tampered: list[str] = []
        self.plain = b""  # the altered spec as a child reads it (the run deletes its spec files at the end)

    @kannon.hookimpl
    def kannon_run_start(self, run: RunInfo, backend: str) -> None:
        self.run_dir, self.key = run.run_dir, run.secrets[speccrypt.KEY_ENV]  # an attacker holding the run's key

    @kannon.hookimpl
    def kannon_task_start(self, event: Event) -> None:
        if event.placement != "bullet" or self.run_dir is None or event.task_id is None:
            return
        path = self.run_dir / "specs" / f"{event.task_id}.json"
        doc = json.loads(speccrypt.open_sealed(path.read_bytes(), self.key))
        doc["nodes"][event.task_id]["module"] = self.module
        doc["sys_path"] = [str(self.directory), *doc["sys_path"]]
        self.plain = json.dumps(doc).encode()
        path.write_bytes(speccrypt.seal(self.plain, self.key))
        self.tampered.append(event.task_id)


def run_task(spec: str, task_id: str, sha: str, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pythonpath), str(REPO)])}
    return subprocess.run([sys.executable, "-m", "kannon", *handoff.child_args(spec, task_id, sha)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_altered_spec_is_refused_before_its_modules_are_imported(tmp_path: Path, figures: Figures,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    module, directory, marker = victim_module(tmp_path)
    # the victim is importable by the children: only the hash check can keep them from importing it
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(directory), str(REPO)]))
    tamper = Tamperer(module, directory)
    task = ledger.Echo(value="harmless")
    with pytest.raises(KannonBuildError) as err:
        Kannon(executor=LocalExecutor(mode="spawn"), retries=2, observers=[tamper]).build(task)
    rec = err.value.result.tasks[unique_id(task)]
    assert tamper.tampered == [unique_id(task)]
    assert rec.status is Status.FAILED and rec.last is not None
    assert (rec.last.exit_code, rec.last.failure_class) == (3, "BadSpec"), rec.describe()
    assert "altered" in (rec.reason or "")
    assert len(rec.attempts) == 1  # a bad spec is not retried
    assert not marker.exists(), "the child imported a module named by an altered spec"
    figures.bad_input(rejected=not marker.exists())

    # control: the same altered spec with a matching hash is imported — the marker works, the hash check saved us
    spec = tmp_path / "altered.json"
    spec.write_bytes(tamper.plain)
    data = spec.read_bytes()
    control = run_task(str(spec), unique_id(task), hashlib.sha256(data).hexdigest(), directory)
    assert control.returncode != 0 and marker.exists(), control.stderr


def test_altered_or_malformed_specs_are_refused_by_a_real_child(tmp_path: Path, figures: Figures) -> None:
    module, directory, marker = victim_module(tmp_path)
    task = ledger.Echo(value="harmless")
    uid = unique_id(task)
    data = handoff.Encoder().spec(task, "tamper", {})
    sha = hashlib.sha256(data).hexdigest()
    doc = json.loads(data)

    def variant(name: str, body: bytes | None, digest: str = sha) -> tuple[str, str, str]:
        path = tmp_path / f"{name}.json"
        if body is not None:
            path.write_bytes(body)
        return name, str(path), digest

    swapped = json.loads(data)
    swapped["nodes"][uid]["module"] = module
    swapped["sys_path"] = [str(directory)]
    injected = json.loads(data)
    injected["nodes"][uid]["module"] = f"{module};import os"
    injected_body = json.dumps(injected).encode()
    cases = [
        variant("module-swapped", json.dumps(swapped).encode()),
        variant("one-byte-added", data + b" "),
        variant("truncated", data[: len(data) // 2]),
        variant("missing", None),
        # a hash that matches (as if the master had written it): the structure check still refuses the name
        variant("injected-module-name", injected_body, hashlib.sha256(injected_body).hexdigest()),
        variant("not-json", b"\x80\x81 not json"),
        variant("other-version", json.dumps({**doc, "kannon_spec": 99}).encode()),
    ]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip([c[0] for c in cases], pool.map(lambda c: run_task(c[1], uid, c[2], directory), cases),
                           strict=True))  # fmt: skip
    for name, done in results.items():
        reason = [ln for ln in done.stderr.splitlines() if ln.startswith("kannon-child: ")]
        assert done.returncode == 3, (name, done.returncode, done.stderr[-2000:])
        assert len(reason) == 1 and "bad spec" in reason[0], (name, done.stderr[-2000:])
        assert "Traceback" not in done.stderr, name
        figures.bad_input(rejected=True)
    assert "altered" in results["module-swapped"].stderr and "altered" in results["one-byte-added"].stderr
    assert not marker.exists(), "a child imported a module named by an altered spec"
