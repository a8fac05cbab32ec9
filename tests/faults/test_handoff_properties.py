"""Property tests of the hand-off (hypothesis): every supported luigi/gokart parameter type, with random values,
round-trips through the spec (Encoder -> parse_spec -> rebuild under fresh_instances()) to the same unique id and
the same values; any other value is either carried exactly the same way or refused by make_plan with a PlanError
that names the task — never a different task in the child, never a raw exception.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import sys
import warnings
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import luigi
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from luigi import date_interval

from kannon import handoff
from kannon.handoff import Encoder, fresh_instances, parse_spec, rebuild, unique_id
from kannon.plan import PlanError, make_plan
from tests.faults import paramtasks
from tests.faults.figures import FIGURES
from tests.faults.harness import REPO
from tests.faults.paramtasks import CHOICES, Color, Every, ParamLeaf, ParamUntyped, Point
from tests.support.properties import examples

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # luigi warns about values of unexpected types

# Example counts follow the hypothesis profile (tests/support/properties.py): fixed examples in CI, a 20x hunt with
# `--hypothesis-profile explore` (bench/explore_properties.py).
EXAMPLES = examples(150)
SETTINGS = settings(max_examples=EXAMPLES)

# -- strategies: values each parameter type is meant to carry ---------------------------------------------------------
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)  # any Unicode a str can hold in UTF-8
json_scalar = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | text
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner,
                          max_size=3), max_leaves=8)  # fmt: skip
dates = st.dates(min_value=datetime.date(1000, 1, 1), max_value=datetime.date(9999, 12, 31))
moments = st.datetimes(min_value=datetime.datetime(1000, 1, 1), max_value=datetime.datetime(9999, 12, 31))
intervals = st.one_of(
    dates.map(date_interval.Date.from_date),
    dates.map(lambda d: date_interval.Week.from_date(d)),
    dates.map(lambda d: date_interval.Month.from_date(d)),
    dates.map(lambda d: date_interval.Year.from_date(d)),
    st.tuples(dates, st.integers(1, 400)).map(lambda t: date_interval.Custom(t[0], t[0] + datetime.timedelta(t[1]))),
)
# luigi's TupleParameter reads its JSON back with tuple() per element, then with ast.literal_eval: JSON null, true,
# false, Infinity, objects and characters beyond U+FFFF (JSON writes surrogate pairs) inside a tuple do not come back
# (kannon refuses those, see the next property).
bmp_text = st.text(st.characters(exclude_categories=["Cs"], max_codepoint=0xFFFF), max_size=30)
tuple_scalar = st.integers() | st.floats(allow_nan=False, allow_infinity=False) | bmp_text
tuples = st.lists(tuple_scalar, max_size=4).map(tuple) | st.lists(
    st.lists(tuple_scalar, max_size=3).map(tuple), max_size=3).map(tuple)  # fmt: skip


def unambiguous(moment: datetime.datetime) -> bool:
    """A wall time that names one instant in its zone: neither in a DST fold (it occurs twice) nor in a gap (never
    occurs). Only such times survive the hand-off (docs/faults.md, Limits): the ISO text carries a fixed offset, and
    Python never finds a time in a fold or gap equal to one in another zone (PEP 495), so kannon refuses them."""
    other = moment.replace(fold=1 - moment.fold)
    return moment.utcoffset() == other.utcoffset()


# ZonedDateSecondParameter: any zone, named (zoneinfo) or fixed, at any unambiguous wall time.
zoned = st.datetimes(min_value=datetime.datetime(1900, 1, 1), max_value=datetime.datetime(9999, 1, 1),
                     timezones=st.timezones()).filter(unambiguous)  # fmt: skip
leaves = st.builds(ParamLeaf, tag=text)
paths = st.text(st.characters(codec="utf-8", exclude_characters="\x00/"), min_size=1, max_size=10).map(Path)

VALID: dict[str, st.SearchStrategy[Any]] = {
    # an Optional*Parameter writes None as "" and reads "" as None: the empty string is not carried (refused)
    "s": text, "st": text, "opt": st.none() | text.filter(bool), "ostr": st.none() | text.filter(bool),
    "i": st.integers(-(2**63), 2**63), "oi": st.none() | st.integers(),
    "f": st.floats(allow_nan=False), "of": st.none() | st.floats(allow_nan=False),
    "b": st.booleans(), "ob": st.none() | st.booleans(), "eb": st.booleans(),
    "d": dates, "mo": dates, "y": dates, "dh": moments, "dm": moments, "ds": moments,
    "zds": zoned,
    "di": intervals,
    "td": st.integers(0, 10**9).map(lambda s: datetime.timedelta(seconds=s)),
    "tp": st.sampled_from([ParamLeaf, Every, ParamUntyped]),
    "en": st.sampled_from(list(Color)), "enl": st.lists(st.sampled_from(list(Color)), max_size=3).map(tuple),
    "dct": st.dictionaries(text, json_value, max_size=4), "odct": st.none() | st.dictionaries(text, json_value),
    "lst": st.lists(json_value, max_size=4), "olst": st.none() | st.lists(json_value, max_size=3),
    "tup": tuples, "otup": st.none() | tuples,
    "num": st.integers(-1000, 999), "onum": st.none() | st.floats(-1.0, 0.999),
    "ch": st.sampled_from(CHOICES), "chl": st.lists(st.sampled_from(CHOICES), max_size=3).map(tuple),
    "och": st.none() | st.sampled_from(CHOICES),
    "pth": paths, "opth": st.none() | paths,
    "ser": st.builds(Point, st.integers(-99, 99), st.integers(-99, 99)),
    "upstream": leaves | st.builds(Every, s=text, i=st.integers(), upstream=leaves),
    "more": st.lists(leaves, max_size=3),
    "note": text, "secret": text,
}  # fmt: skip
assert set(VALID) == set(paramtasks.names()), "a parameter of Every has no strategy"

ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), text, st.binary(max_size=8),
    st.lists(st.integers(), max_size=3), st.dictionaries(text, st.integers(), max_size=3),
    st.sets(st.integers(), max_size=3), st.builds(object), dates, moments, st.timedeltas(),
    st.sampled_from(list(Color)), st.builds(Point, st.integers(), st.integers()), st.just(ParamLeaf), leaves,
    st.text(max_size=5),  # lone surrogates included: not encodable as UTF-8
)  # fmt: skip


def construct(values: dict[str, Any]) -> Every:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # luigi warns about values of unexpected types; that is the point here
        return Every(**values)


def round_trip(task: luigi.Task) -> luigi.Task:
    """Master side to child side and back in this process, with a fresh instance cache."""
    uid = unique_id(task)
    data = Encoder().spec(task, "prop", {})
    doc = parse_spec(data)
    with fresh_instances():
        clone = rebuild(doc)[uid]
    assert clone is not task
    assert unique_id(clone) == uid
    return clone


def same_values(a: luigi.Task, b: luigi.Task) -> None:
    for name, param in type(a).get_params():
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, luigi.Task) or (isinstance(x, (list, tuple)) and x and isinstance(x[0], luigi.Task)):
            xs, ys = (x, y) if isinstance(x, (list, tuple)) else ([x], [y])
            assert [unique_id(t) for t in xs] == [unique_id(t) for t in ys], name
        else:
            assert param.serialize(x) == param.serialize(y), name
            assert type(x) is type(y) or (x is None) == (y is None), (name, type(x), type(y))


def carried_exactly(task: luigi.Task) -> bool:
    """The oracle, independent of make_plan's own check: does the task come back from the hand-off as the same task
    with the same values?"""
    try:
        same_values(task, round_trip(task))
    except Exception:  # a different task or value, or the encoder or the rebuild raising
        return False
    return True


def plan_refusal(task: luigi.Task) -> str | None:
    """make_plan's PlanError message for ``task``, None when it plans it."""
    try:
        make_plan(task)
    except PlanError as e:
        return str(e)
    return None


@SETTINGS
@given(values=st.fixed_dictionaries({}, optional=VALID))
def test_supported_values_round_trip_to_the_same_task(values: dict[str, Any]) -> None:
    task = construct(values)
    make_plan(task)  # a PlanError here is a supported value refused
    same_values(task, round_trip(task))


@settings(max_examples=2 * EXAMPLES)
@given(name=st.sampled_from(paramtasks.names()), value=ANYTHING)
def test_any_value_is_carried_exactly_or_refused_with_the_task_named(name: str, value: Any) -> None:
    try:
        task = construct({name: value})
    except Exception:
        assume(False)  # luigi itself refuses the value when the task is constructed: kannon never sees it
    refusal = plan_refusal(task)
    named = refusal is not None and "Every(" in refusal  # the message names the task
    if not carried_exactly(task):  # a bad input: the figure counts what make_plan really did with it
        FIGURES.bad_input(rejected=named)
        assert refusal is not None, f"{name}={value!r} does not come back the same, yet make_plan accepted it"
    assert refusal is None or named, refusal


def json_native(v: Any) -> bool:
    """What an untyped parameter carries besides tasks: JSON values with their Python types (UTF-8 text, no NaN)."""
    if v is None or type(v) in (bool, int):
        return True
    if type(v) is float:
        return v == v
    if type(v) is str:
        try:
            v.encode("utf-8")
            return True
        except UnicodeEncodeError:
            return False  # a lone surrogate is no text a UTF-8 spec can hold
    if type(v) in (list, tuple):
        return all(json_native(x) for x in v)
    if isinstance(v, Mapping):
        return all(json_native(k) and json_native(x) for k, x in v.items())
    return False


@settings(max_examples=examples(100))
@given(value=ANYTHING)
def test_untyped_parameter_takes_json_values_and_tasks_and_refuses_everything_else(value: Any) -> None:
    task = ParamUntyped(value=value)
    sent = task.param_kwargs["value"]  # luigi keeps lists and sets given to a plain Parameter as tuples
    refusal = plan_refusal(task)
    if isinstance(value, luigi.Task) or json_native(sent):  # a task travels as a reference to its node
        assert refusal is None, refusal
        clone = round_trip(task)
        same_values(task, clone)
        assert clone.param_kwargs["value"] == sent or isinstance(sent, luigi.Task)
        return
    named = refusal is not None and "ParamUntyped(" in refusal and "Traceback" not in refusal
    FIGURES.bad_input(rejected=named)  # what make_plan really did, counted before it is asserted
    assert named, f"{value!r} in an untyped parameter: {refusal or 'planned, not refused'}"


@pytest.mark.parametrize("wall", [datetime.datetime(2021, 11, 7, 1, 30), datetime.datetime(2021, 3, 14, 2, 30)],
                         ids=["fold", "gap"])  # fmt: skip
def test_a_zoned_time_in_a_dst_fold_or_gap_is_refused_at_plan_time(wall: datetime.datetime) -> None:
    """The limit the "zds" strategy leaves out: New York's 01:30 on 2021-11-07 happens twice, 02:30 on 2021-03-14
    never; either would reach the child as a fixed-offset time that Python finds unequal to the master's."""
    zone = zoneinfo.ZoneInfo("America/New_York")
    for fold in (0, 1):
        moment = wall.replace(tzinfo=zone, fold=fold)
        assert not unambiguous(moment)
        with pytest.raises(PlanError, match=r"Every\(.*parameter zds="):
            make_plan(construct({"zds": moment}))
    make_plan(construct({"zds": wall.replace(hour=5, tzinfo=zone)}))  # the same day, unambiguous: carried


def test_a_value_that_cannot_be_utf8_is_refused_at_plan_time() -> None:
    task = ParamUntyped(value="surrogate \udc80 here")
    with pytest.raises(PlanError, match=r"ParamUntyped\("):
        make_plan(task)


@settings(max_examples=examples(4), suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(values=st.fixed_dictionaries({}, optional={k: v for k, v in VALID.items() if k not in ("upstream", "tp")}))
def test_a_real_child_rebuilds_the_same_task(values: dict[str, Any], tmp_path: Path) -> None:
    """The same property in a separate interpreter (its own import order): `python -m kannon run-task` exits 0
    only if every rebuilt unique id equals the master's; it then writes the output at the master's path."""
    task = construct(values)
    for dep in [task.upstream, *task.more]:
        dep.dump(dep.tag)  # upstream outputs exist: the child refuses to recompute them otherwise
    data = Encoder().spec(task, "prop-child", handoff.luigi_config_snapshot())
    spec = tmp_path / f"{unique_id(task)}.json"
    spec.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "kannon", *handoff.child_args(str(spec), unique_id(task), sha)],
                          env=env, cwd=os.getcwd(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert task.complete()  # written at the path the master computed from its own unique id


def test_specs_are_text_without_pickles() -> None:
    task = construct({"dct": {"a": [1, 2.5, None]}, "ser": Point(1, 2), "more": [ParamLeaf(tag="x")]})
    doc = json.loads(Encoder().spec(task, "r", {}))
    node = doc["nodes"][unique_id(task)]
    assert node["params"]["ser"] == {"v": "1,2"}
    assert node["params"]["more"] == {"tasks": [unique_id(ParamLeaf(tag="x"))]}
