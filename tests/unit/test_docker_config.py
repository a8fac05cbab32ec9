"""The Docker backend's pure parts: option parsing, mounts, resources, labels, hint validation, classification.

No engine is needed: these check what would be sent to the engine and how its answers are read.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kannon.backends.base import BackendError, Launch, RunInfo
from kannon.backends.docker import (
    LABEL_ATTEMPT,
    LABEL_CONFIG,
    LABEL_FAMILY,
    LABEL_RUN,
    LABEL_TASK,
    Bind,
    DockerExecutor,
    add_options,
    classify,
    config_hash,
    container_name,
    engine_address,
    from_options,
    hint_problems,
    kannon_backends,
    parse_env,
    parse_volume,
    plan_binds,
    resource_kwargs,
)
from kannon.hints import Hints

TASK_ID = "0123456789abcdef0123456789abcdef"


def make_launch(tmp_path: Path, hints: Hints = Hints(), **kw: object) -> Launch:
    values: dict[str, object] = dict(
        key=f"{TASK_ID}-1", run_id="run123", task_id=TASK_ID, family="Train", attempt=1,
        child_args=("run-task", "--spec", str(tmp_path / "spec.json"), "--task-id", TASK_ID, "--sha256", "ab"),
        env={"KANNON_RUN_ID": "run123", "SHARED": "from-core"}, hints=hints, log_path=tmp_path / "logs" / "t.log",
        labels={"kannon.io/run-id": "run123"},
    )  # fmt: skip
    values.update(kw)
    return Launch(**values)  # type: ignore[arg-type]


def started_executor(tmp_path: Path, **kw: object) -> DockerExecutor:
    """An executor with run info set, without talking to an engine (container_config needs no engine)."""
    ex = DockerExecutor("img:1", **kw)  # type: ignore[arg-type]
    ex.run = RunInfo("run123", tmp_path / "run")
    return ex


# -- volumes and env ---------------------------------------------------------------------------------------------
def test_parse_volume_forms() -> None:
    assert parse_volume("/data:/mnt/data") == Bind("/data", "/mnt/data", False)
    assert parse_volume("/data:/mnt/data:ro") == Bind("/data", "/mnt/data", True)
    assert parse_volume("/data:/mnt/data:rw") == Bind("/data", "/mnt/data", False)
    assert parse_volume("/data") == Bind("/data", "/data", False)
    assert parse_volume("/data:ro") == Bind("/data", "/data", True)
    assert parse_volume("rel/dir:/x").host == os.path.abspath("rel/dir")
    assert parse_volume("/a:/b:ro").spec() == "/a:/b:ro"


@pytest.mark.parametrize("bad", ["/a:/b:rx", "/a:relative", "/a:/b:ro:x", ":/b", "/a::ro"])
def test_parse_volume_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="volume"):
        parse_volume(bad)


def test_parse_env_values_and_inherited_names() -> None:
    assert parse_env(["A=1", "B=x=y", "C="], inherit={}) == {"A": "1", "B": "x=y", "C": ""}
    assert parse_env(["TOKEN"], inherit={"TOKEN": "s3cret"}) == {"TOKEN": "s3cret"}
    with pytest.raises(ValueError, match="not set"):
        parse_env(["MISSING"], inherit={})
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_env(["1BAD=x"], inherit={})


def test_plan_binds_defaults_same_path_without_duplicates() -> None:
    user = [Bind("/venv", "/venv", True), Bind("/host/cfg", "/work/cfg", True)]
    binds = plan_binds(user, ["/work", "/work/run", "/elsewhere/run", "/", "/work/cfg"])
    assert binds == [
        Bind("/venv", "/venv", True),
        Bind("/host/cfg", "/work/cfg", True),
        Bind("/work", "/work"),
        # /work/run is covered by the same-path /work bind; / is never mounted; /work/cfg is taken by the user
        Bind("/elsewhere/run", "/elsewhere/run"),
    ]


# -- container configuration -------------------------------------------------------------------------------------
def test_container_config_mounts_workdir_and_run_dir_and_runs_as_master(tmp_path: Path) -> None:
    ex = started_executor(tmp_path, working_dir=tmp_path / "wd", volumes=["/venv:/venv:ro"],
                          environment={"SHARED": "from-executor", "ONLY_EXEC": "1"})  # fmt: skip
    # Launch.env is the core's merged environment (inherited < hints < KANNON_*): the backend lays it over its
    # own and never merges Hints.env again (which would let a hint override kannon's own variables)
    launch = make_launch(tmp_path, Hints(env={"SHARED": "from-hints", "KANNON_RUN_ID": "forged"}),
                         env={"KANNON_RUN_ID": "run123", "SHARED": "from-launch"})  # fmt: skip
    cfg = ex.container_config(launch)
    assert cfg["image"] == "img:1"
    assert cfg["command"] == ["python", "-m", "kannon", *launch.child_args]
    assert cfg["working_dir"] == str(tmp_path / "wd")
    assert cfg["volumes"] == ["/venv:/venv:ro", f"{tmp_path / 'wd'}:{tmp_path / 'wd'}:rw",
                              f"{tmp_path / 'run'}:{tmp_path / 'run'}:rw"]  # fmt: skip
    assert cfg["user"] == f"{os.getuid()}:{os.getgid()}"
    # executor env < Launch.env
    assert cfg["environment"]["SHARED"] == "from-launch"
    assert cfg["environment"]["ONLY_EXEC"] == "1"
    assert cfg["environment"]["KANNON_RUN_ID"] == "run123"
    assert cfg["init"] is True and cfg["detach"] is True
    assert "auto_remove" not in cfg  # removal waits until the exit state and the log are collected


def test_container_config_labels_and_name(tmp_path: Path) -> None:
    cfg = started_executor(tmp_path).container_config(make_launch(tmp_path, attempt=3))
    labels = cfg["labels"]
    assert labels[LABEL_RUN] == "run123"
    assert labels[LABEL_TASK] == TASK_ID
    assert labels[LABEL_ATTEMPT] == "3"
    assert labels[LABEL_FAMILY] == "Train"
    assert cfg["name"] == container_name("run123", TASK_ID, 3) == f"kannon-run123-{TASK_ID}-a3"


def test_container_name_is_valid_for_odd_run_ids() -> None:
    name = container_name("run/with spaces:and*stars", TASK_ID, 1)
    assert all(c.isalnum() or c in "_.-" for c in name)


def test_hints_image_overrides_and_python_is_configurable(tmp_path: Path) -> None:
    ex = started_executor(tmp_path, python="/opt/venv/bin/python")
    cfg = ex.container_config(make_launch(tmp_path, Hints(image="other:2")))
    assert cfg["image"] == "other:2"
    assert cfg["command"][:3] == ["/opt/venv/bin/python", "-m", "kannon"]


def test_no_cwd_mount_and_user_override(tmp_path: Path) -> None:
    ex = started_executor(tmp_path, mount_cwd=False, user="1000:1000", working_dir="/app")
    cfg = ex.container_config(make_launch(tmp_path))
    assert cfg["volumes"] == [f"{tmp_path / 'run'}:{tmp_path / 'run'}:rw"]
    assert cfg["user"] == "1000:1000"
    assert cfg["working_dir"] == "/app"


@pytest.mark.parametrize(
    ("network", "key"), [("none", "network_mode"), ("host", "network_mode"), ("container:abc", "network_mode"),
                         ("my-net", "network"), (None, None)],
)  # fmt: skip
def test_network_option(tmp_path: Path, network: str | None, key: str | None) -> None:
    cfg = started_executor(tmp_path, network=network).container_config(make_launch(tmp_path))
    if key is None:
        assert "network" not in cfg and "network_mode" not in cfg
    else:
        assert cfg[key] == network


def test_resource_hints_map_to_engine_limits() -> None:
    assert resource_kwargs(Hints()) == {}
    assert resource_kwargs(Hints(cpu="500m", memory="64Mi", gpu=2)) == {
        "nano_cpus": 500_000_000,
        "mem_limit": 64 * 2**20,
        "memswap_limit": 64 * 2**20,  # no swap: over the limit means a real OOM kill
        "device_requests": [{"count": 2, "capabilities": [["gpu"]]}],
    }
    assert resource_kwargs(Hints(cpu=2))["nano_cpus"] == 2_000_000_000


def test_config_hash_ignores_env_and_attempt_but_not_command_or_limits(tmp_path: Path) -> None:
    ex = started_executor(tmp_path)
    base = ex.container_config(make_launch(tmp_path))
    other_env = ex.container_config(make_launch(tmp_path, attempt=2, env={"X": "changed"}))
    more_memory = ex.container_config(make_launch(tmp_path, Hints(memory="1Gi")))
    other_spec = ex.container_config(make_launch(tmp_path, child_args=("run-task", "--spec", "/other")))
    assert base["labels"][LABEL_CONFIG] == other_env["labels"][LABEL_CONFIG] == config_hash(base)
    assert base["labels"][LABEL_CONFIG] != more_memory["labels"][LABEL_CONFIG]
    assert base["labels"][LABEL_CONFIG] != other_spec["labels"][LABEL_CONFIG]


def test_executor_basics() -> None:
    ex = DockerExecutor("img:1")
    assert ex.name == "docker"
    assert ex.spec_transport(10**6) == "local"
    assert ex.default_parallelism >= 1
    with pytest.raises(ValueError, match="image"):
        DockerExecutor("")


# -- validation ----------------------------------------------------------------------------------------------------
ENGINE = {"NCPU": 2, "MemTotal": 8 * 2**30, "Runtimes": {"runc": {}, "io.containerd.runc.v2": {}}}


def test_hint_problems_accepts_what_the_engine_can_do() -> None:
    assert hint_problems(Hints(cpu="1500m", memory="512Mi"), ENGINE) == []
    # scheduling constraints mean nothing on one machine: accepted so the pipeline stays portable
    assert hint_problems(Hints(node_selector={"pool": "gpu"}, tolerations=[{"key": "k"}]), ENGINE) == []


def test_hint_problems_rejects_what_the_engine_cannot_honour() -> None:
    (cpu,) = hint_problems(Hints(cpu=4), ENGINE)
    assert "2 CPU(s)" in cpu and "lower `cpu`" in cpu
    (small_cpu,) = hint_problems(Hints(cpu="5m"), ENGINE)
    assert "minimum" in small_cpu
    (mem,) = hint_problems(Hints(memory="4Mi"), ENGINE)
    assert "6Mi" in mem and "raise `memory`" in mem
    (gpu,) = hint_problems(Hints(gpu=1), ENGINE)
    assert "nvidia-container-toolkit" in gpu and "runc" in gpu
    assert hint_problems(Hints(gpu=1), {**ENGINE, "Runtimes": {"nvidia": {}, "runc": {}}}) == []


# -- classification --------------------------------------------------------------------------------------------------
def test_classify_success_and_exit_codes(tmp_path: Path) -> None:
    launch = make_launch(tmp_path)
    ok = classify(launch, {"ExitCode": 0, "OOMKilled": False}, cancelled=False, where="c", log_tail=("done",))
    assert ok.ok and ok.reason is None and ok.log_tail == ("done",) and ok.where == "c"
    fail = classify(launch, {"ExitCode": 6}, cancelled=False, where="c", log_tail=())
    assert not fail.ok and fail.exit_code == 6 and fail.failure_class == "TaskFailed"
    assert "raised" in (fail.reason or "")
    imp = classify(launch, {"ExitCode": 8}, cancelled=False, where="c", log_tail=())
    assert imp.failure_class == "ImportFailed" and "installed in the image" in (imp.reason or "")
    other = classify(launch, {"ExitCode": 42, "Error": "boom"}, cancelled=False, where="c", log_tail=())
    assert other.failure_class == "NonZeroExit" and "42" in (other.reason or "") and "boom" in (other.reason or "")
    # the child's own one-line explanation wins over the generic text
    said = classify(launch, {"ExitCode": 5}, cancelled=False, where="c",
                    log_tail=("kannon-child: upstream Foo output /x is missing",))  # fmt: skip
    assert said.reason is not None and said.reason.startswith("upstream Foo output /x is missing")


def test_classify_command_not_executable(tmp_path: Path) -> None:
    tail = ("[FATAL tini (7)] exec /no/python failed: No such file or directory",)
    fin = classify(make_launch(tmp_path), {"ExitCode": 127}, cancelled=False, where="c", log_tail=tail,
                   command="/no/python")  # fmt: skip
    assert fin.failure_class == "ContainerStart" and "/no/python" in (fin.reason or "")
    assert "DockerExecutor(python=...)" in (fin.reason or "")
    # a task of its own exiting 127 is not mistaken for it
    own = classify(make_launch(tmp_path), {"ExitCode": 127}, cancelled=False, where="c", log_tail=("bye",))
    assert own.failure_class == "NonZeroExit"


def test_classify_oom_names_the_limit(tmp_path: Path) -> None:
    launch = make_launch(tmp_path, Hints(memory="32Mi"))
    fin = classify(launch, {"ExitCode": 137, "OOMKilled": True}, cancelled=False, where="c", log_tail=())
    assert fin.failure_class == "OOMKilled" and fin.exit_code == 137 and not fin.ok
    assert "32Mi" in (fin.reason or "") and "raise `memory`" in (fin.reason or "")
    no_limit = classify(make_launch(tmp_path), {"ExitCode": 137, "OOMKilled": True}, cancelled=False, where="c",
                        log_tail=())  # fmt: skip
    assert no_limit.failure_class == "OOMKilled" and "set `memory`" in (no_limit.reason or "")


def test_classify_sigkill_without_oom_says_so(tmp_path: Path) -> None:
    fin = classify(make_launch(tmp_path), {"ExitCode": 137, "OOMKilled": False}, cancelled=False, where="c",
                   log_tail=())  # fmt: skip
    assert fin.failure_class == "Killed" and "not at the container's memory limit" in (fin.reason or "")


def test_classify_cancelled_wins(tmp_path: Path) -> None:
    fin = classify(make_launch(tmp_path), {"ExitCode": 143}, cancelled=True, where="c", log_tail=())
    assert fin.failure_class == "Cancelled" and fin.exit_code == 143


# -- engine address in errors ------------------------------------------------------------------------------------
def test_engine_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert "/var/run/docker.sock" in engine_address() and "DOCKER_HOST is not set" in engine_address()
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.1:2375")
    assert engine_address() == "tcp://10.0.0.1:2375 (from DOCKER_HOST)"
    assert engine_address("unix:///x.sock") == "unix:///x.sock"
    monkeypatch.setenv("DOCKER_HOST", "ssh://deploy:hunter2@build-host")
    assert "hunter2" not in engine_address() and "build-host" in engine_address()


# -- CLI options and plugin registration ---------------------------------------------------------------------------
def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_options(p.add_argument_group("docker backend"))
    return p.parse_args(argv)


def test_cli_options_build_the_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KANNON_TEST_TOKEN", "t0k")
    ns = parse(["--image", "pipe:3", "--volume", "/data:/data:ro", "--volume", "/cache",
                "--env", "A=1", "--env", "KANNON_TEST_TOKEN", "--docker-network", "none",
                "--docker-python", "/venv/bin/python"])  # fmt: skip
    ex = from_options(ns)
    assert ex.image == "pipe:3"
    assert ex.volumes == [Bind("/data", "/data", True), Bind("/cache", "/cache", False)]
    assert ex.environment == {"A": "1", "KANNON_TEST_TOKEN": "t0k"}
    assert ex.network == "none"
    assert ex.python == "/venv/bin/python"


def test_cli_errors_are_backend_errors() -> None:
    with pytest.raises(BackendError, match="--image"):
        from_options(parse([]))
    with pytest.raises(BackendError, match="volume"):
        from_options(parse(["--image", "x", "--volume", "/a:/b:zz"]))


def test_registered_through_the_entry_point() -> None:
    (spec,) = kannon_backends()
    assert spec.name == "docker" and spec.add_options is add_options and spec.from_options is from_options
    from kannon.plugins import get_backend

    assert get_backend("docker").factory is DockerExecutor


def test_module_imports_without_the_docker_sdk() -> None:
    # Loading the plugin (every `kannon` command does) must not import the SDK or talk to an engine.
    code = "import sys, kannon.backends.docker; assert 'docker' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
