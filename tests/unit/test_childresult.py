"""The child-result record (kannon.childresult): its JSON form, its parsing and its size limit."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
from pathlib import Path

import pytest

from kannon.childresult import (
    RESULT_VERSION,
    TERMINATION_MESSAGE_MAX,
    ChildResult,
    Requested,
    Usage,
    parse,
    read,
    to_json,
    write_atomic,
)

USAGE = Usage(peak_rss_bytes=312 * 2**20, peak_source="cgroup-v1", cpu_seconds=0.51, wall_seconds=1.25,
              output_bytes=4096, oom_limit_bytes=None)  # fmt: skip
FULL = ChildResult(task="a" * 32, spec_sha256="b" * 64, attempt=2, outcome="TaskFailed", exit_code=6, usage=USAGE,
                   requested=(Requested("c" * 32, "d" * 64), Requested("e" * 32, "f" * 64)))  # fmt: skip


@pytest.mark.parametrize(
    "record",
    [
        FULL,
        ChildResult(task="t", spec_sha256="s", attempt=1, outcome="ok", exit_code=0),
        dataclasses.replace(FULL, usage=dataclasses.replace(USAGE, peak_rss_bytes=None, peak_source="rusage")),
        dataclasses.replace(FULL, usage=dataclasses.replace(USAGE, oom_limit_bytes=2**30)),
    ],
)
def test_round_trip(record: ChildResult) -> None:
    text = to_json(record)
    assert parse(text) == record
    assert parse(text.encode()) == record


def test_the_json_names_its_version_and_only_known_keys() -> None:
    doc = json.loads(to_json(FULL))
    assert doc["kannon_result"] == RESULT_VERSION == 1
    assert set(doc) == {"kannon_result", "task", "spec_sha256", "attempt", "outcome", "exit_code", "usage",
                        "requested"}  # fmt: skip
    assert set(doc["usage"]) == {"peak_rss_bytes", "peak_source", "cpu_seconds", "wall_seconds", "output_bytes"}


def test_no_field_can_hold_a_parameter_value() -> None:
    # What a record holds is fixed by its dataclasses: task ids, hashes, figures. A parameter value has no place.
    names = {f.name for cls in (ChildResult, Usage, Requested) for f in dataclasses.fields(cls)}
    assert names == {"task", "spec_sha256", "attempt", "outcome", "exit_code", "usage", "requested", "truncated",
                     "peak_rss_bytes", "peak_source", "cpu_seconds", "wall_seconds", "output_bytes",
                     "oom_limit_bytes"}  # fmt: skip


def test_unknown_keys_are_ignored() -> None:
    doc = json.loads(to_json(FULL))
    doc["outputs"] = [{"task": "x", "sha256": "y"}]
    doc["usage"]["io_bytes"] = 5
    assert parse(json.dumps(doc)) == FULL


@pytest.mark.parametrize("version", [0, 2, "1", None, True])
def test_unknown_version_is_none(version: object) -> None:
    doc = json.loads(to_json(FULL))
    doc["kannon_result"] = version
    assert parse(json.dumps(doc)) is None
    del doc["kannon_result"]
    assert parse(json.dumps(doc)) is None


@pytest.mark.parametrize(
    "text",
    ["", "not json", "[]", "null", "1", '{"kannon_result": 1}', b"\xff\xfe{", "{" * 100_000,
     to_json(FULL)[:-1], to_json(FULL)[: TERMINATION_MESSAGE_MAX // 40]],
)  # fmt: skip
def test_garbage_is_none(text: str | bytes) -> None:
    assert parse(text) is None


@pytest.mark.parametrize(
    ("key", "value"),
    [("attempt", "2"), ("attempt", True), ("exit_code", None), ("task", 5), ("requested", {"task": "x"}),
     ("requested", [["x", "y"]]), ("usage", [1]), ("usage", {"peak_source": "rusage"})],
)  # fmt: skip
def test_wrong_types_are_none(key: str, value: object) -> None:
    doc = json.loads(to_json(FULL))
    doc[key] = value
    assert parse(json.dumps(doc)) is None


def test_a_record_too_long_for_kubernetes_is_cut_to_fit_and_flagged() -> None:
    many = tuple(Requested(f"{i:032x}", f"{i:064x}") for i in range(200))  # ~27 KiB of references
    record = dataclasses.replace(FULL, requested=many)
    assert len(to_json(record)) > TERMINATION_MESSAGE_MAX
    text = to_json(record, max_bytes=TERMINATION_MESSAGE_MAX)
    assert len(text.encode()) <= TERMINATION_MESSAGE_MAX
    got = parse(text)
    assert got is not None and got.truncated
    assert got.usage == USAGE and got.outcome == FULL.outcome and got.exit_code == FULL.exit_code
    assert 0 < len(got.requested) < len(many)
    assert got.requested == many[: len(got.requested)]  # a prefix, in order
    # and as many as fit: one more would not
    one_more = dataclasses.replace(record, requested=many[: len(got.requested) + 1], truncated=True)
    assert len(to_json(one_more)) > TERMINATION_MESSAGE_MAX


def test_a_record_that_fits_is_not_flagged() -> None:
    text = to_json(FULL, max_bytes=TERMINATION_MESSAGE_MAX)
    assert text == to_json(FULL)
    assert parse(text) == FULL and not FULL.truncated


def test_usage_is_dropped_last_when_even_no_reference_fits() -> None:
    text = to_json(FULL, max_bytes=len(to_json(dataclasses.replace(FULL, usage=None, requested=()))) + 20)
    got = parse(text)
    assert got is not None and got.truncated and got.usage is None and got.requested == ()
    assert (got.task, got.exit_code) == (FULL.task, FULL.exit_code)


def test_write_atomic_creates_the_directory_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "results" / "inv" / "task-1.json"
    write_atomic(path, FULL)
    assert read(path) == FULL
    write_atomic(path, dataclasses.replace(FULL, attempt=3))
    got = read(path)
    assert got is not None and got.attempt == 3
    assert os.listdir(path.parent) == ["task-1.json"]


def test_write_atomic_in_place_when_the_file_cannot_be_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Kubernetes terminationMessagePath is a file the kubelet bind-mounts into the container: renaming onto a
    # mount point fails with EBUSY (rename(2)). The record must still land, written in place.
    path = tmp_path / "termination-log"
    path.write_text("")

    def busy(src: object, dst: object) -> None:
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(os, "replace", busy)
    write_atomic(path, FULL)
    assert read(path) == FULL
    assert os.listdir(tmp_path) == ["termination-log"]


def test_read_of_a_missing_file_is_none(tmp_path: Path) -> None:
    assert read(tmp_path / "none.json") is None
