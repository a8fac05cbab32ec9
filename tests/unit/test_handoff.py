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


@pytest.mark.parametrize(
    ("task", "name", "value"),
    [
        (Untyped(value=3), "value", 3),  # a plain Parameter holding an int
        (Untyped(value=None), "value", None),  # luigi.Parameter(default=None)
        (Untyped(value=[1, 2.5, True, None, "s", {"k": [1]}]), "value", [1, 2.5, True, None, "s", {"k": [1]}]),
        (AllTypes(f=1), "f", 1),  # FloatParameter given an int: its text "1" is what gokart hashes
        (AllTypes(note=7), "note", 7),  # insignificant too: the child must not get "7"
    ],
)
def test_json_native_values_travel_with_their_type(task: luigi.Task, name: str, value: object) -> None:
    back = round_trip(task)
    assert back.make_unique_id() == task.make_unique_id()
    sent = task.param_kwargs[name]  # luigi keeps a list given to a plain Parameter as a tuple
    assert sent == (tuple(value) if isinstance(value, list) else value)
    assert back.param_kwargs[name] == sent and type(back.param_kwargs[name]) is type(sent)


def test_dict_parameter_with_int_keys_keeps_its_keys_and_id() -> None:
    task = AllTypes(dct={1: "a", 2: {3: [4]}})
    back = round_trip(task)
    assert back.make_unique_id() == task.make_unique_id()
    assert list(back.dct) == [1, 2] and list(back.dct[2]) == [3]


def test_every_unrepresentable_parameter_of_every_task_is_reported_at_once() -> None:
    a, b = Untyped(value=object()), AllTypes(s=object(), opt=object(), note=2j)
    problems = []
    for task in (a, b):
        with pytest.raises(handoff.HandoffError) as e:
            handoff.Encoder().encode(task)
        problems.extend(e.value.problems)
    named = sorted((p.split("(")[0], p.split("parameter ")[1].split("=")[0]) for p in problems)
    assert named == [("AllTypes", "note"), ("AllTypes", "opt"), ("AllTypes", "s"), ("Untyped", "value")]
    assert all("JSON values" in p for p in problems)


class Normalising(gokart.TaskOnKart[str]):
    name = luigi.Parameter()

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.name = self.name.strip().lower()  # a common pattern; the id comes from the constructor's value


def test_a_task_rebinding_a_parameter_in_init_is_rebuilt_from_its_constructor_values() -> None:
    task = Normalising(name="  MiXed ")
    back = round_trip(task)
    assert back.make_unique_id() == task.make_unique_id()
    assert back.param_kwargs["name"] == "  MiXed " and back.name == "mixed"


def test_rebuild_refuses_a_cached_object_built_with_other_insignificant_values() -> None:
    cfg = luigi.configuration.get_config()
    with handoff.fresh_instances():
        master = Leaf(name="cached")  # the master's object: default workspace
        data = handoff.Encoder().spec(master, "run", {})
    cfg.set("TaskOnKart", "workspace_directory", "/elsewhere/")
    try:
        Leaf(name="cached")  # as a module would at import time, under another config: now in luigi's cache
        with pytest.raises(handoff.IdMismatchError, match=r"Leaf \[.*parameter workspace_directory is '/elsewhere/'"):
            handoff.rebuild(handoff.parse_spec(data))  # deliberately NOT in a fresh cache
        with handoff.fresh_instances():
            assert handoff.rebuild(handoff.parse_spec(data))[master.make_unique_id()].workspace_directory == \
                master.workspace_directory  # fmt: skip
    finally:
        cfg.remove_option("TaskOnKart", "workspace_directory")


def test_spec_carries_where_the_master_imported_the_modules_from(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import importlib
    import sys

    (tmp_path / "edited_path_mod.py").write_text(
        "import gokart\nclass Edited(gokart.TaskOnKart[str]):\n    pass\n")
    sys.path.insert(0, str(tmp_path))
    try:
        mod = importlib.import_module("edited_path_mod")
        doc = json.loads(handoff.Encoder().spec(mod.Edited(), "run", {}, sys_path=["/given"]))
        assert doc["sys_path"] == ["/given", str(tmp_path)]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("edited_path_mod", None)


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
