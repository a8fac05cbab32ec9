"""The child environment, computed in one place for every backend.

Precedence, lowest first (a later layer replaces a name set by an earlier one):

1. the executor's own environment: the master's environment (local backend), the executor's ``environment=``
   (Docker), the Job template's container env (Kubernetes) — applied by the backend, under everything below;
2. ``env_to_inherit``: named variables copied from the master's environment (unset ones are skipped) — secrets
   by default (credentials are what users pass this way), so they travel in ``RunInfo.secrets``, once per run,
   and each backend delivers them by its own safe means, never as a plain value in a spec;
3. the task's ``Hints.env``;
4. kannon's own reserved variables (:data:`RESERVED`): nothing overrides them, and a ``Hints.env`` naming one is
   refused at plan time.

``Launch.env`` carries layers 3-4 already merged; a backend lays it over layers 1 and 2 and never merges
``Hints.env`` again.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

from kannon.hints import Hints

#: Set by kannon for every child (the core, or a backend for its own mechanics); a task may not set them.
RESERVED = frozenset({
    "KANNON_RUN_ID", "KANNON_INVOCATION_ID", "KANNON_TASK_ID", "KANNON_ATTEMPT", "KANNON_SPEC",
    "KANNON_PARENT_PID", "KANNON_RLIMIT_AS", "KANNON_SECRETS_FILE", "KANNON_SPEC_KEY",
    "KANNON_RESULT_PATH", "KANNON_OWN_CONTAINER", "KANNON_ATTEMPT_STARTED",  # the child-result record, kannon.measure
})  # fmt: skip


def hint_problems(family: str, hints: Hints) -> list[str]:
    """Plan-time problems of ``hints.env`` (one sentence each)."""
    bad = sorted(name for name in hints.env if name in RESERVED)
    return [f"env {name!r} is reserved: kannon sets it for every child; use another name" for name in bad]


# luigi's EnvironmentInterpolation (luigi/configuration/cfg_parser.py): a config value may say ``${NAME}``.
_ENV_REF = re.compile(r"\$\{([^}]+)\}")


def config_env_names(config: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Environment variables the config a child gets refers to (``${NAME}``, raw values as the spec carries them).

    The child resolves that config, so under ``gokart.build`` parity it needs the values the master sees —
    delivered as secrets, since configs take credentials exactly this way. Sections the child does not get
    (kannon.handoff.config_for_child) ask for nothing."""
    return sorted({name for options in config.values() for value in options.values()
                   for name in _ENV_REF.findall(value)})  # fmt: skip


class ChildEnv:
    """The inherited layer is read once, when the run starts: a master that changes its own environment later
    does not give later children a different one."""

    def __init__(self, env_to_inherit: Sequence[str], source: Mapping[str, str] | None = None) -> None:
        src = os.environ if source is None else source
        self.inherited = {name: src[name] for name in env_to_inherit if name in src}

    def for_launch(self, hints: Hints, kannon_vars: Mapping[str, str]) -> dict[str, str]:
        unknown = set(kannon_vars) - RESERVED
        if unknown:
            raise ValueError(f"not reserved kannon variables: {sorted(unknown)}")
        return {**hints.env, **kannon_vars}
