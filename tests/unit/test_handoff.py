from __future__ import annotations

import datetime
import hashlib
import json

import gokart
import luigi
import pytest

from kannon import handoff
from tests.support.tasks import AllTypes, Bullet, Color, Leaf, Untyped


def round_trip(task: luigi.Task) -> luigi.Task:
    enc = handoff.Encoder()
    data = enc.spec(task, "run", handoff.luigi_config_snapshot())
    handoff.verify_hash(data, hashlib.sha256(data).hexdigest())
    doc = handoff.parse_spec(data)
    with handoff.fresh_instances():
        built = handoff.rebuild(doc)
    return built[doc["target"]]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"s": "a b; rm -rf / $(whoami) `id` 'q' \"dq\" | & > < \n newline \t tab ünïcode"},
        {"i": -7, "f": 0.1 + 0.2, "b": True},
        {"d": datetime.date(1999, 12, 31), "dt": datetime.datetime(2000, 1, 1, 0, 0, 1)},
        {"lst": [1, [2, 3], {"x": "y"}], "tup": (1, (2, 3)), "dct": {"nested": {"a": [1, 2]}, "k": None}},
        {"color": Color.GREEN, "opt": "set"},
        {"note": "insignificant but shipped"},
        {"s": "x" * 200_000},
    ],
)
def test_round_trip_keeps_values_and_unique_id(kwargs: dict) -> None:
    task = AllTypes(**kwargs)
    back = round_trip(task)
    assert back is not task
    assert back.make_unique_id() == task.make_unique_id()
    for name, _ in AllTypes.get_params():
        if name == "many":
            continue
        assert getattr(back, name) == getattr(task, name), name


def test_nested_and_list_of_task_parameters() -> None:
    leaf = Leaf(name="l")
    mid = Bullet(name="m", parents=[leaf], sleep=2.5)  # sleep is insignificant: must still arrive
    task = AllTypes(many=[mid, Leaf(name="a"), Leaf(name="b")])
    back = round_trip(task)
    assert back.make_unique_id() == task.make_unique_id()
    assert back.many[0].sleep == 2.5
    assert [t.name for t in back.many] == ["m", "a", "b"]


def test_explicit_workspace_directory_survives() -> None:
    task = Leaf(name="w", workspace_directory="/somewhere/else")
    wrapper = Bullet(name="top", parents=[task])
    back = round_trip(wrapper)
    assert back.parents[0].workspace_directory == "/somewhere/else"


def test_spec_size_is_linear_in_shared_ancestors() -> None:
    # A ladder where every level depends twice on the level below: gokart's own serializer doubles per level
    # (so much that luigi itself cannot construct ~20 levels); ours has one node per task.
    def ladder(depth: int) -> bytes:
        level: luigi.Task = Leaf(name="base")
        for i in range(depth):
            level = AllTypes(s=str(i), many=[level, level])
        data = handoff.Encoder().spec(level, "run", {})
        assert len(json.loads(data)["nodes"]) == depth + 1
        return data

    small, large = ladder(4), ladder(8)
    assert len(large) < 2.2 * len(small)  # doubling the depth doubles the size: linear, not exponential


def test_untyped_parameter_with_int_is_rejected_with_the_task_named() -> None:
    with pytest.raises(handoff.HandoffError) as e:
        handoff.Encoder().encode(Untyped(value=3))
    msg = str(e.value)
    assert "Untyped" in msg and "value=3" in msg and "IntParameter" in msg


def test_float_parameter_given_an_int_is_rejected() -> None:
    with pytest.raises(handoff.HandoffError, match="unique id"):
        handoff.Encoder().encode(AllTypes(f=1))


def test_main_module_class_is_rejected() -> None:
    Local = type("Local", (gokart.TaskOnKart,), {"__module__": "__main__"})
    with pytest.raises(handoff.HandoffError, match="__main__"):
        handoff.Encoder().encode(Local())


def test_altered_spec_fails_the_hash_check() -> None:
    data = handoff.Encoder().spec(Leaf(name="x"), "run", {})
    sha = hashlib.sha256(data).hexdigest()
    with pytest.raises(handoff.SpecError, match="altered"):
        handoff.verify_hash(data.replace(b'"x"', b'"y"'), sha)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(kannon_spec=99),
        lambda d: d.update(target="nope"),
        lambda d: next(iter(d["nodes"].values())).update(module="os; import x"),
        lambda d: next(iter(d["nodes"].values())).update(**{"class": "a b"}),
        lambda d: next(iter(d["nodes"].values()))["params"].update(name={"task": "missing"}),
        lambda d: next(iter(d["nodes"].values()))["params"].update(name={"v": 1}),
        lambda d: d.update(config={"s": {"k": 1}}),
    ],
)
def test_malformed_specs_are_rejected_before_import(mutate) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(handoff.Encoder().spec(Leaf(name="x"), "run", {}))
    mutate(doc)
    with pytest.raises(handoff.SpecError):
        handoff.parse_spec(json.dumps(doc).encode())


def test_non_task_class_in_spec_is_refused() -> None:
    doc = json.loads(handoff.Encoder().spec(Leaf(name="x"), "run", {}))
    node = doc["nodes"][doc["target"]]
    node["module"], node["class"] = "collections", "OrderedDict"
    node["params"] = {}
    handoff.import_modules(doc)
    with pytest.raises(handoff.SpecError, match="not a luigi/gokart task class"):
        handoff.rebuild(doc)


def test_child_args_are_an_argv_list_without_a_shell() -> None:
    args = handoff.child_args("/path with space/spec.json", "abc", "0" * 64)
    assert args == ("run-task", "--spec", "/path with space/spec.json", "--task-id", "abc", "--sha256", "0" * 64)


def test_config_snapshot_is_raw_so_env_references_resolve_in_the_child(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cfg = luigi.configuration.get_config()
    if not cfg.has_section("kannon_test"):
        cfg.add_section("kannon_test")
    cfg.set("kannon_test", "secret", "${KANNON_TEST_SECRET}")
    monkeypatch.setenv("KANNON_TEST_SECRET", "hunter2")
    snap = handoff.luigi_config_snapshot()
    assert snap["kannon_test"]["secret"] == "${KANNON_TEST_SECRET}"
    cfg.remove_section("kannon_test")
