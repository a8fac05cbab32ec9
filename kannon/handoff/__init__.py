"""The hand-off: a task graph as JSON (master side) and its verified rebuild (child side). No pickle.

A spec is one JSON document::

    {"kannon_spec": 1, "target": "<unique id>", "run_id": ..., "sys_path": [...],
     "config": {"section": {"key": "raw value"}},
     "nodes": {"<unique id>": {"module": "pkg.mod", "class": "Qual.Name",
                               "params": {"name": {"v": "text"} | {"j": <typed JSON>} | {"task": "<id>"}
                                                   | {"tasks": ["<id>", ...]}}}},
     "requires": {"<unique id>": {"params": {...}}}}   # what the target's requires() returned in the master

Every parameter (insignificant and private ones included) is taken from ``param_kwargs`` (what the task was
constructed with: luigi hashes those, and ``__init__`` may rebind the attribute), written with the parameter's own
``serialize`` and read back with its own ``parse``. A value that text cannot reproduce exactly (an int in an untyped
parameter, ``FloatParameter`` given ``1``, int dict keys, None) travels as typed JSON (``handoff_values.to_json``)
when it is made of JSON-native values. Task-valued parameters are references to other nodes, so a spec grows
linearly with the upstream closure even on DAGs with shared ancestors. The child is told the spec's location, the
expected unique id and the spec's sha256 (``child_args``, the only place the child command is built); it checks the hash
before importing anything, then every rebuilt node's unique id and constructor values, and that the target's
requires() returns tasks constructed with the master's values (``check_requirements``).

The modules, by side: :mod:`.tasks` (what both sides read off a task), :mod:`.encode` (master: the spec),
:mod:`.spec` (the document's version, the child command, and the child's hash check and validation),
:mod:`.rebuild` (child, and the master's round-trip check: the verified rebuild), :mod:`.config` (the luigi config
a spec carries).
"""

from __future__ import annotations

from kannon.handoff.config import CHILD_SECTIONS, apply_config, config_for_child, luigi_config_snapshot
from kannon.handoff.encode import Encoder, import_roots
from kannon.handoff.rebuild import (
    check_constructed,
    check_requirements,
    rebuild,
    verify_round_trip,
    verify_round_trips,
)
from kannon.handoff.spec import (
    SPEC_VERSION,
    IdMismatchError,
    SpecError,
    child_args,
    import_modules,
    parse_spec,
    verify_hash,
)
from kannon.handoff.tasks import constructor_value, describe, is_public, short_params, unique_id
from kannon.handoff_values import HandoffError  # part of this package's interface: the master's "cannot hand off"
from kannon.instcache import fresh_instances

__all__ = [
    "CHILD_SECTIONS",
    "SPEC_VERSION",
    "Encoder",
    "HandoffError",
    "IdMismatchError",
    "SpecError",
    "apply_config",
    "check_constructed",
    "check_requirements",
    "child_args",
    "config_for_child",
    "constructor_value",
    "describe",
    "fresh_instances",
    "import_modules",
    "import_roots",
    "is_public",
    "luigi_config_snapshot",
    "parse_spec",
    "rebuild",
    "short_params",
    "unique_id",
    "verify_hash",
    "verify_round_trip",
    "verify_round_trips",
]
