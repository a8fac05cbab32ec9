"""The luigi config a child runs with: the master's, taken raw, narrowed to the sections a child may need (so the
master's own secrets stay out of the spec), and applied in the child."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import luigi
from luigi import task_register


def luigi_config_snapshot() -> dict[str, dict[str, str]]:
    """The master's effective luigi config as raw text, so ``${ENV}`` references are resolved in the child."""
    cfg = luigi.configuration.get_config()
    out: dict[str, dict[str, str]] = {}
    if hasattr(cfg, "sections") and hasattr(cfg, "items"):
        for section in cfg.sections():
            try:
                items = cfg.items(section, raw=True)
            except TypeError:  # a parser without raw= (e.g. toml); values are already plain
                items = cfg.items(section)
            out[section] = {str(k): str(v) for k, v in items}
    return out


#: luigi's and gokart's own sections a child may read whatever its tasks are; gokart imports some of their Config
#: classes lazily (S3Config when an s3:// target is first made), so the master's registry may not know them yet
CHILD_SECTIONS = frozenset({"core", "worker", "TaskOnKart", "gokart_worker", "S3Config", "GCSConfig", "SlackConfig",
                            "PandasTypeConfigMap"})  # fmt: skip


def config_for_child(config: Mapping[str, Mapping[str, str]], task_classes: Iterable[type],
                     extra: Iterable[str] = ()) -> dict[str, dict[str, str]]:  # fmt: skip
    """The sections of ``config`` a child needs (docs/design.md, "What a spec carries"): those named after a task
    family of the plan or one of its base classes (luigi reads a parameter's default from its class's section,
    gokart reads ``[TaskOnKart]``), after any ``luigi.Config`` class the master imported (a task's run() may read
    one: gokart's S3Config/GCSConfig, luigi's core/worker, the user's own), and the ones named in ``extra``
    (``Kannon(config_sections=...)`` / ``--config-section``). Any other section (credentials for the master's
    own use, say) stays out of the spec."""
    wanted = set(CHILD_SECTIONS) | set(extra)
    for cls in task_classes:
        wanted.update(str(base.get_task_family()) for base in cls.__mro__
                      if isinstance(base, task_register.Register))  # fmt: skip
    configs: list[Any] = [c for c in list(task_register.Register._reg)
                          if isinstance(c, type) and issubclass(c, luigi.Config)]  # fmt: skip
    wanted.update(str(c.get_task_family()) for c in configs)
    return {name: dict(options) for name, options in config.items() if name in wanted}


def apply_config(config: Mapping[str, Mapping[str, str]]) -> None:
    cfg = luigi.configuration.get_config()
    for section, options in config.items():
        if not cfg.has_section(section):
            cfg.add_section(section)
        for key, value in options.items():
            cfg.set(section, key, value)
