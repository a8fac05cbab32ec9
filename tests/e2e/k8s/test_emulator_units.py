"""Pure pieces of the emulator (no server): selector grammar, quantities, query booleans, $(VAR) expansion, patches."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kannon.testing.kube.errors import ApiError
from kannon.testing.kube.exchange import query_bool
from kannon.testing.kube.jobvalidation import prepare_job
from kannon.testing.kube.node.env import expand
from kannon.testing.kube.selectors import parse_field_selector, parse_label_selector
from kannon.testing.kube.validation import label_key_errors, label_value_errors, parse_quantity
from kannon.testing.kube.writes import json_patch, merge_patch

pytestmark = pytest.mark.k8s


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("True", True),
        ("1", True),
        ("", True),
        ("yes", True),
        ("0", False),
        ("false", False),
        ("False", False),
        (None, False),
    ],
)
def test_query_booleans(value: str | None, expected: bool) -> None:
    assert query_bool(value) is expected


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a in (x, y)", {"a": "y"}, True),
        ("a notin (x,y)", {"a": "x"}, False),
        ("a notin (x,y)", {}, True),
        ("a", {"a": ""}, True),
        ("!a", {"a": ""}, False),
        ("a=", {"a": ""}, True),
        ("k8s.io/name=v,x in (1),y", {"k8s.io/name": "v", "x": "1", "y": "z"}, True),
        ("n>3", {"n": "4"}, True),
        ("n<3", {"n": "4"}, False),
    ],
)
def test_label_selector_semantics(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert parse_label_selector(selector).matches(labels) is matches


@pytest.mark.parametrize("bad", ["a=b,", ",a", "a in x", "a in (x", "a b", "=b", "a=b=c", "a in ()", "bad key!=v"])
def test_bad_label_selectors_are_400(bad: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_label_selector(bad)
    assert err.value.code == 400 and err.value.reason == "BadRequest"


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@given(st.dictionaries(_label, _label, max_size=4), st.dictionaries(_label, _label, max_size=4))
def test_equality_selector_matches_exactly_the_superset(required: dict[str, str], labels: dict[str, str]) -> None:
    text = ",".join(f"{k}={v}" for k, v in required.items())
    expected = all(labels.get(k) == v for k, v in required.items())
    assert parse_label_selector(text).matches(labels) is expected


def test_field_selector() -> None:
    sel = parse_field_selector("pods", "status.phase!=Running,metadata.name=p")
    assert sel.matches({"metadata": {"name": "p"}, "status": {"phase": "Failed"}})
    assert not sel.matches({"metadata": {"name": "p"}, "status": {"phase": "Running"}})
    with pytest.raises(ApiError):
        parse_field_selector("jobs", "spec.whatever=1")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("128Mi", Decimal(128 * 2**20)),
        ("1G", Decimal(10**9)),
        ("1e3", Decimal(1000)),
        ("1.5Gi", Decimal(3 * 2**29)),
    ],
)
def test_quantities(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("bad", ["lots", "1.2.3Mi", "Mi", "5 Mi", "1Zi"])
def test_bad_quantities(bad: str) -> None:
    with pytest.raises(ValueError, match="quantities must match"):
        parse_quantity(bad)


def test_label_rules() -> None:
    assert label_value_errors("x" * 63) == [] and label_value_errors("") == []
    assert label_value_errors("x" * 64) == ["must be no more than 63 bytes"]
    assert label_value_errors("-x") != [] and label_value_errors("a b") != []
    assert label_key_errors("kannon.io/task-id") == [] and label_key_errors("Bad_Prefix/x") != []


def test_env_expansion_rules() -> None:
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)", env) == "1-two"
    assert expand("$(MISSING)", env) == "$(MISSING)"  # undefined references stay literal
    assert expand("$$(A)", env) == "$(A)"  # $$ escapes
    assert expand("cost: $5 $(A", env) == "cost: $5 $(A"


def test_patches() -> None:
    doc = {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": [1, 2]}}
    assert merge_patch(doc, {"metadata": {"labels": {"a": None, "c": "3"}}, "spec": {"x": [3]}}) == {
        "metadata": {"labels": {"b": "2", "c": "3"}},
        "spec": {"x": [3]},
    }
    out = json_patch(
        doc, [{"op": "add", "path": "/metadata/labels/z", "value": "9"}, {"op": "remove", "path": "/spec/x/0"}]
    )
    assert out["metadata"]["labels"]["z"] == "9" and out["spec"]["x"] == [2]
    assert doc["spec"]["x"] == [1, 2]  # the original is untouched


def test_prepare_job_defaults_and_labels() -> None:
    body = {
        "metadata": {"name": "j"},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "img:1", "resources": {"limits": {"cpu": "1"}}}],
                },
            }
        },
    }
    job = prepare_job(body, "ns", "uid-1")
    assert job["metadata"]["labels"]["app"] == "x" and job["metadata"]["labels"]["job-name"] == "j"
    ctr = job["spec"]["template"]["spec"]["containers"][0]
    assert ctr["resources"]["requests"] == {"cpu": "1"}  # requests default to limits
    assert ctr["imagePullPolicy"] == "IfNotPresent" and job["spec"]["podReplacementPolicy"] == "TerminatingOrFailed"
