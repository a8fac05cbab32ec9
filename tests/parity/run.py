"""``python -m tests.parity.run ENGINE OUT.json [SCENARIO ...]``: run every parity scenario with one engine
(gokart = ``gokart.build``, fork / spawn = ``kannon.build`` on the local backend in that mode), each in its own
directory under the cwd (workspace ./resources), and write what each produced as JSON.

One process per engine: the pipeline modules pick their base class (TaskOnKart or TaskOnBullet) at import.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import luigi
from gokart.build import GokartBuildError

HERE = Path(__file__).resolve().parent

#: the scenario names, known without importing the pipelines (which would register their task classes in the
#: importing process: pytest's, where other tests' classes of the same names live)
NAMES = (
    "many_types", "json_native", "init_rebinds_parameter", "task_definition_check", "same_class_name_in_two_modules",
    "dump_formats_dict_requires", "list_requires_and_output", "rerun", "strict_check", "cache_unique_id_false",
    "fail_on_empty_dump", "task_raises", "master_task_above_a_failure", "master_task_raises", "requires_decorator",
    "inherits_decorator", "config_file_and_env", "task_namespace", "missing_external_input",
    "modification_time_check", "sys_path_edit", "sys_path_edit_unreachable_helper", "status_and_progress",
)  # fmt: skip


def scenarios() -> dict[str, Callable[[], Any]]:
    from tests.parity import pipelines as p

    def twins() -> Any:
        from tests.parity import twin_b

        return twin_b.Twin()

    def sidepath() -> Any:
        sys.path.insert(0, str(HERE / "sidepath"))  # the master's own sys.path edit, as a script would make
        import parity_sidepath  # type: ignore[import-not-found]

        return parity_sidepath.OnSidePath()

    def sidepath_helper() -> Any:
        sys.path.insert(0, str(HERE / "sidepath"))
        sys.path.insert(0, str(HERE / "helperpath"))
        return p.SideRoot()

    def configured() -> Any:
        cfg = Path("parity.cfg")
        cfg.write_text("[Configured]\ngreeting = from-file\nfrom_env = ${PARITY_GREETING}\n")
        luigi.configuration.add_config_path(str(cfg.resolve()))
        return p.Configured()

    def rerun() -> Any:
        import gokart

        gokart.build(p.Counted())  # a complete output first, built the same way by both engines
        return p.Counted(rerun=True)

    made = {
        "many_types": lambda: p.ManyTypes(s="é; $(x)", i=-3, lst=[1, [2]], dct={"n": {"m": None}}, color=p.Color.GREEN),
        "json_native": p.JsonNative,
        "init_rebinds_parameter": lambda: p.Normalising(name="  MiXed "),
        "task_definition_check": p.Defined,
        "same_class_name_in_two_modules": twins,
        "dump_formats_dict_requires": p.Formats,
        "list_requires_and_output": p.ListOut,
        "rerun": rerun,
        "strict_check": p.Strict,
        "cache_unique_id_false": p.Uncached,
        "fail_on_empty_dump": p.Empty,
        "task_raises": p.Raises,
        "master_task_above_a_failure": p.RaisesBelow,
        "master_task_raises": p.MasterRaises,
        "requires_decorator": lambda: p.Required(tag="r"),
        "inherits_decorator": lambda: p.Inherited(tag="i"),
        "config_file_and_env": configured,
        "task_namespace": p.Spaced,
        "missing_external_input": p.NeedsMissing,
        "modification_time_check": p.TimeChecked,
        "sys_path_edit": sidepath,
        "sys_path_edit_unreachable_helper": sidepath_helper,
        "status_and_progress": p.StatusReporting,
    }
    assert tuple(made) == NAMES
    return made


def describe_value(value: Any) -> str:
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return repr(value.to_dict(orient="list"))
    if isinstance(value, dict):
        return repr({k: describe_value(v) for k, v in value.items()})
    if isinstance(value, list):
        return repr([describe_value(v) for v in value])
    return repr(value)


def files(workspace: Path) -> list[str]:
    if not workspace.exists():
        return []
    out = []
    for path in workspace.rglob("*"):
        rel = path.relative_to(workspace)
        if path.is_file() and rel.parts[0] != "kannon":  # kannon's own run directory
            out.append(str(rel))
    return sorted(out)


def run_one(engine: str, name: str, make_root: Callable[[], Any]) -> dict[str, Any]:
    import gokart

    import kannon
    from kannon.backends.local import LocalExecutor

    luigi.task_register.Register.clear_instance_cache()
    root = make_root()
    out: dict[str, Any] = {"root_id": root.make_unique_id(), "ok": True, "value": None, "error": None,
                           "raised": None, "message": None}  # fmt: skip
    try:
        build = gokart.build if engine == "gokart" else partial(kannon.build, executor=LocalExecutor(mode=engine))
        value = build(root)
        out["value"] = describe_value(value)
    except Exception as e:
        out["ok"] = False
        out["error"] = "GokartBuildError" if isinstance(e, GokartBuildError) else type(e).__name__
        out["message"] = str(e)
        raised = getattr(e, "raised_exceptions", None)
        if raised is not None:
            out["raised"] = {uid: [getattr(x, "type_name", type(x).__name__) for x in excs]
                             for uid, excs in raised.items()}  # fmt: skip
            out["remote"] = {uid: [[getattr(x, "module", ""), str(x), getattr(x, "traceback_text", "")]
                                   for x in excs] for uid, excs in raised.items()}  # fmt: skip
        if not isinstance(e, GokartBuildError) and type(e).__name__ != "PlanError":
            out["traceback"] = traceback.format_exc()
    out["files"] = files(Path("resources"))
    return out


def main(argv: list[str]) -> int:
    engine, target, *only = argv
    os.environ["PARITY_ENGINE"] = engine
    os.environ.setdefault("PARITY_GREETING", "hello-from-env")
    logging.disable(logging.WARNING)  # gokart.build's banners and kannon's progress lines are not compared
    top = Path.cwd()
    results = {}
    for name, make_root in scenarios().items():
        if only and name not in only:
            continue
        d = top / engine / name
        d.mkdir(parents=True, exist_ok=True)
        os.chdir(d)
        started = time.monotonic()
        try:
            results[name] = run_one(engine, name, make_root)
        finally:
            os.chdir(top)
        results[name]["seconds"] = round(time.monotonic() - started, 2)
    Path(target).write_text(json.dumps(results, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
