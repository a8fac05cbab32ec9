"""The hand-off's shared work (value round-trip memo, one warm walk per rebuild, one rebuild for several classes)
keeps every check it replaces."""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path

import gokart
import luigi
import pytest

import kannon
from kannon import handoff
from tests.support.tasks import AllTypes, Leaf

_requires_calls = itertools.count()
_drift = itertools.count()
_chain_requires = itertools.count()


class HandoffChainStep(kannon.TaskOnBullet[int]):
    """A chain through task parameters; counts requires() calls."""

    n = luigi.IntParameter()
    parent = gokart.TaskInstanceParameter()

    def requires(self):  # type: ignore[no-untyped-def]
        next(_requires_calls)
        return self.parent if self.n > 0 else []

    def run(self) -> None:
        self.dump(self.n)


class HandoffDrifting(kannon.TaskOnBullet[str]):
    """requires() differs on every call: no rebuild reproduces its unique id."""

    def requires(self):  # type: ignore[no-untyped-def]
        return Leaf(name=f"drift-{next(_drift)}")

    def run(self) -> None:
        self.dump("never")


def _chain(length: int) -> HandoffChainStep:
    task = HandoffChainStep(n=0, parent=Leaf(name="root"))
    for n in range(1, length):
        task = HandoffChainStep(n=n, parent=task)
    return task


def test_a_cached_round_trip_does_not_send_a_value_of_another_type_as_text() -> None:
    enc = handoff.Encoder()
    enc.encode(AllTypes(s="7", i=1))  # caches the text "7" of parameter s as a good round trip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # luigi warns about the int too
        uid = enc.encode(AllTypes(s=7, i=2))  # same text, but as text the child would get a str
    assert enc.nodes[uid]["params"]["s"] == {"j": 7}


def test_rebuild_checks_every_node_with_work_linear_in_the_chain() -> None:
    length = 40
    top = _chain(length)
    doc = json.loads(handoff.Encoder().spec(top, "run", {}))
    assert len(doc["nodes"]) == length + 1
    before = next(_requires_calls)
    with handoff.fresh_instances():
        built = handoff.rebuild(doc)
    calls = next(_requires_calls) - before - 1
    assert built[doc["target"]].make_unique_id() == top.make_unique_id()
    # one warm walk shared by all nodes (plus gokart's own call per id): a walk per node would be ~length**2 / 2
    assert calls <= 3 * length, calls


def test_rebuild_still_detects_a_changed_node_deep_in_the_chain() -> None:
    top = _chain(10)
    doc = json.loads(handoff.Encoder().spec(top, "run", {}))
    leaf_uid = next(uid for uid, n in doc["nodes"].items() if n["class"] == "Leaf")
    doc["nodes"][leaf_uid]["params"]["name"] = {"v": "other"}
    with handoff.fresh_instances(), pytest.raises(handoff.IdMismatchError, match="Leaf rebuilt with unique id"):
        handoff.rebuild(doc)


def test_a_requires_cycle_met_while_rebuilding_is_an_error_not_a_hang() -> None:
    doc = {"target": "a" * 32, "nodes": {"a" * 32: {"module": __name__, "class": "HandoffSelfLoop", "params": {}}}}
    with handoff.fresh_instances(), pytest.raises(handoff.SpecError, match="cycle"):
        handoff.rebuild(doc)


class HandoffSelfLoop(gokart.TaskOnKart[str]):
    def requires(self):  # type: ignore[no-untyped-def]
        return self


def test_verify_round_trips_passes_several_classes_sharing_upstream() -> None:
    enc = handoff.Encoder()
    shared = _chain(5)
    tasks = [HandoffChainStep(n=99, parent=shared), AllTypes(many=[shared]), AllTypes(s="other", many=[shared])]
    assert handoff.verify_round_trips(tasks, enc) == []


def test_verify_round_trips_names_exactly_the_task_that_cannot_be_rebuilt() -> None:
    enc = handoff.Encoder()
    good, bad = AllTypes(s="fine"), HandoffDrifting()
    problems = handoff.verify_round_trips([good, bad], enc)
    assert len(problems) == 1 and "HandoffDrifting" in problems[0] and "cannot be handed off" in problems[0]


class HandoffReqChain(kannon.TaskOnBullet[int]):
    """A chain through requires(); counts requires() calls."""

    n = luigi.IntParameter()

    def requires(self):  # type: ignore[no-untyped-def]
        next(_chain_requires)
        return HandoffReqChain(n=self.n - 1) if self.n > 0 else []

    def run(self) -> None:
        self.dump(self.n)


def test_the_plans_rebuild_check_uses_the_instance_with_the_least_upstream(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from kannon.plan import make_plan

    monkeypatch.chdir(tmp_path)
    length = 200
    before = next(_chain_requires)
    plan = make_plan(HandoffReqChain(n=length - 1))
    calls = next(_chain_requires) - before - 1
    assert len(plan.nodes) == length
    # the walk and the unique ids call requires() once per task each; rebuilding the top of the chain would add
    # another 2 per task, rebuilding the task nearest the leaves (that has a requirement) a handful
    assert calls <= 2 * length + 10, calls


def test_the_rebuild_check_still_catches_a_class_whose_requires_is_not_deterministic() -> None:
    from kannon.plan import PlanError, make_plan

    with pytest.raises(PlanError, match="HandoffDrifting"):
        make_plan(HandoffDrifting())


class HandoffManyOf(kannon.TaskOnBullet[int]):
    n = luigi.IntParameter()


def test_an_encoder_keeps_little_per_task_when_tasks_share_their_settings() -> None:
    """An encoder keeps every node of a build (issue 16: a master of 10,000 bullets). A gokart task has ~20
    parameters, nearly all with the same text in every task (its TaskOnKart settings): the value each encodes to is
    kept once, not once per task. tracemalloc counts what stays allocated, not time, so this holds on any machine."""
    import gc
    import tracemalloc

    encoder = handoff.Encoder()
    tasks = [HandoffManyOf(n=i) for i in range(400)]
    for task in tasks[:50]:  # the first tasks fill the caches (and the interpreter's own) that the rest reuse
        encoder.encode(task)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for task in tasks[50:]:
            encoder.encode(task)
        gc.collect()
        per_task = (tracemalloc.get_traced_memory()[0] - before) / 350
    finally:
        tracemalloc.stop()
    nodes = [encoder.nodes[handoff.unique_id(t)] for t in tasks]
    assert {p for p in nodes[0]["params"]} == {p for p in nodes[-1]["params"]} and len(nodes[0]["params"]) > 15
    shared = [name for name in nodes[0]["params"] if name != "n"]
    assert all(nodes[1]["params"][name] is nodes[-1]["params"][name] for name in shared)
    assert [node["params"]["n"] for node in nodes[:3]] == [{"v": "0"}, {"v": "1"}, {"v": "2"}]
    assert per_task < 3000, f"{per_task:.0f} bytes kept per encoded task"  # 1.7-2.1 KB (3.10-3.13); 5.4 KB before


def test_an_encoder_forgets_a_written_node_unless_a_task_parameter_names_it() -> None:
    """After its spec is written a node is only needed by specs naming it through a task parameter: released, a
    build's encoder keeps nothing per task (10,000 nodes were 5 MB held to the run's end). A retry encodes again."""
    encoder = handoff.Encoder()
    shared = _chain(3)
    top, lone = HandoffChainStep(n=9, parent=shared), HandoffManyOf(n=7)
    first = [encoder.spec(t, "run", {}) for t in (top, lone)]
    for uid in (handoff.unique_id(top), handoff.unique_id(lone), handoff.unique_id(shared)):
        encoder.release(uid)
    assert handoff.unique_id(top) not in encoder.nodes and handoff.unique_id(lone) not in encoder.nodes
    assert handoff.unique_id(shared) in encoder.nodes, "top's parent parameter names it: another spec may need it"
    assert [encoder.spec(t, "run", {}) for t in (top, lone)] == first


def test_specs_keep_no_node_of_a_task_whose_spec_is_written(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from kannon.backends.local import LocalExecutor
    from kannon.plan import make_plan
    from kannon.scheduler.specs import Specs

    monkeypatch.chdir(tmp_path)
    plan = make_plan(HandoffManyOf(n=3))
    specs = Specs(LocalExecutor(), "run", tmp_path / "run", [], None, None, [HandoffManyOf])
    spec, _ = specs.encode(plan.nodes[plan.root_id])
    assert specs.encoder.nodes == {} and specs.encoder.edges == {}
    assert Path(spec.location).exists()


def test_the_value_memo_keeps_the_texts_in_use_and_no_more(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A parameter whose text differs in every task (an index) would otherwise leave an entry per task for the whole
    build; the settings every task shares stay (one encoded value for all), being used by each task."""
    from kannon import handoff_values

    monkeypatch.setattr(handoff_values, "PARSED_MAX", 40)
    encoder = handoff.Encoder()
    tasks = [HandoffManyOf(n=i) for i in range(300)]
    for task in tasks:
        encoder.encode(task)
    assert len(encoder._parsed) <= 40
    nodes = [encoder.nodes[handoff.unique_id(t)] for t in tasks]
    shared = [name for name in nodes[0]["params"] if name != "n"]
    assert len(shared) > 15 and all(nodes[1]["params"][name] is nodes[-1]["params"][name] for name in shared)
    assert [node["params"]["n"] for node in nodes[:2]] == [{"v": "0"}, {"v": "1"}]
    again = handoff.Encoder()  # evicted texts encode as before
    assert [again.nodes[again.encode(t)] for t in tasks[:3]] == nodes[:3]
