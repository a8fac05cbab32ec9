"""The emulator reads the official client's generated type strings; both generator spellings of a map must work
(kubernetes 35 writes ``dict(str, str)``, earlier majors ``dict[str, str]``)."""

from __future__ import annotations

import json

import pytest

from kannon.testing.kube import openapi
from kannon.testing.kube.schema import list_item, map_value, unknown_fields


@pytest.mark.parametrize("typ", ["dict(str, V1Container)", "dict[str, V1Container]"])
def test_a_map_of_models_is_read_in_either_spelling(typ: str) -> None:
    assert map_value(typ) == "V1Container"
    value = {"a": {"name": "x", "imagee": "y"}}
    found = unknown_fields(value, typ)
    assert len(found) == 1 and found[0].endswith("imagee")
    assert value == {"a": {"name": "x"}}  # dropped in place, as the decoder does


def test_list_and_map_nest() -> None:
    assert list_item("list[dict(str, str)]") == "dict(str, str)"
    assert map_value("dict(str, list[str])") == "list[str]"
    assert list_item("V1Job") is None and map_value("V1Job") is None


def test_the_openapi_documents_build_with_the_installed_client() -> None:
    root = openapi.root()
    assert set(root["paths"]) == set(openapi.SERVED)
    doc = json.loads(openapi.group_version_doc("apis/batch/v1"))
    labels = doc["components"]["schemas"]["V1ObjectMeta"]["properties"]["labels"]
    assert labels["type"] == "object" and labels["additionalProperties"] == {"type": "string"}
