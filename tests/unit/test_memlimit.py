"""Which memory mechanism the local backend picks, on cgroup hierarchies laid out as the kernel lays them out."""

from __future__ import annotations

from pathlib import Path

from kannon.backends._memlimit import choose


def _hierarchy(root: Path, controllers: str, subtree: str) -> Path:
    own = root / "user.slice" / "me"
    own.mkdir(parents=True)
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (own / "cgroup.subtree_control").write_text(subtree + "\n")
    return own


def test_cgroup_v2_with_the_memory_controller_delegated_is_used(tmp_path: Path) -> None:
    own = _hierarchy(tmp_path, "cpuset cpu io memory pids", "")
    mech = choose([(str(tmp_path), "cgroup2", {"rw"})], {"": "/user.slice/me"})
    assert mech.kind == "cgroup2" and mech.base == own
    assert "+memory" in (own / "cgroup.subtree_control").read_text()  # enabled for the children it will create


def test_cgroup_v2_without_the_memory_controller_falls_back_to_the_watchdog(tmp_path: Path) -> None:
    _hierarchy(tmp_path, "cpu pids", "")
    mech = choose([(str(tmp_path), "cgroup2", {"rw"})], {"": "/user.slice/me"})
    assert mech.kind == "watchdog" and "no memory controller" in mech.why_not_cgroup
    assert "polling" in mech.describe() and "no memory controller" in mech.describe()


def test_cgroup_v1_memory_controller_is_preferred(tmp_path: Path) -> None:
    v1 = tmp_path / "memory"
    (v1 / "process_api" / "abc").mkdir(parents=True)
    mech = choose([(str(v1), "cgroup", {"rw", "memory"}), (str(tmp_path / "unified"), "cgroup2", set())],
                  {"memory": "/process_api/abc", "": "/"})  # fmt: skip
    assert mech.kind == "cgroup1" and mech.base == v1 / "process_api" / "abc"
    assert "cgroup v1" in mech.describe()


def test_no_cgroup_mounted_means_the_watchdog() -> None:
    assert choose([], {}).kind == "watchdog"
