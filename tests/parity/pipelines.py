"""The parity tier's pipelines: every task subclasses ``Base``, which is ``gokart.TaskOnKart`` when the process runs
them with ``gokart.build`` and ``kannon.TaskOnBullet`` when it runs them with ``kannon.build`` (PARITY_ENGINE)."""

from __future__ import annotations

import datetime
import enum
import os
from pathlib import Path
from typing import Any

import gokart
import luigi
import luigi.util
import pandas as pd
from gokart.task import TaskOnKart

import kannon

ENGINE = os.environ.get("PARITY_ENGINE", "gokart")
Base: Any = gokart.TaskOnKart if ENGINE == "gokart" else kannon.TaskOnBullet


class Color(enum.Enum):
    RED = 1
    GREEN = 2


# -- parameters of many types, and JSON-native values in untyped / loosely typed parameters (issue 18 point 4) ----
class ManyTypes(Base):
    s = luigi.Parameter(default="x")
    i = luigi.IntParameter(default=1)
    f = luigi.FloatParameter(default=0.5)
    b = luigi.BoolParameter(default=False)
    d = luigi.DateParameter(default=datetime.date(2024, 2, 29))
    dt = luigi.DateSecondParameter(default=datetime.datetime(2024, 2, 29, 12, 30, 5))
    lst = luigi.ListParameter(default=[1, 2])
    tup = luigi.TupleParameter(default=(1, "a"))
    dct = luigi.DictParameter(default={"a": 1})
    color = luigi.EnumParameter(enum=Color, default=Color.RED)
    opt = luigi.OptionalParameter(default=None)
    num = luigi.NumericalParameter(default=5, var_type=int, min_value=0, max_value=10)
    choice = luigi.ChoiceParameter(default="b", choices=["a", "b"])
    delta = luigi.TimeDeltaParameter(default=datetime.timedelta(hours=1))
    note = luigi.Parameter(default="n", significant=False)

    def run(self) -> None:
        self.dump({name: repr(getattr(self, name)) for name, _ in self.get_params()
                   if name in type(self).__dict__})  # fmt: skip


class JsonNative(Base):
    untyped_int = luigi.Parameter(default=3)
    none_default = luigi.Parameter(default=None)
    float_given_int = luigi.FloatParameter(default=1)
    int_keys = luigi.DictParameter(default={1: "a", 2: {3: [4]}})
    nested = luigi.Parameter(default=[1, 2.5, True, None, {"k": "v"}])

    def run(self) -> None:
        self.dump({k: (repr(v), type(v).__name__) for k, v in self.param_kwargs.items()
                   if k in type(self).__dict__})  # fmt: skip


# -- a task whose __init__ rebinds a parameter attribute (point 2) ------------------------------------------------
class Normalising(Base):
    name = luigi.Parameter()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name = self.name.strip().lower()

    def run(self) -> None:
        self.dump(f"hello {self.name}")


# -- serialized_task_definition_check (point 1) -------------------------------------------------------------------
class Defined(Base):
    serialized_task_definition_check = True
    n = luigi.IntParameter(default=2)

    def helper(self) -> int:
        return self.n * 21

    def run(self) -> None:
        self.dump(self.helper())


# -- dump formats, dict/list requires and output -------------------------------------------------------------------
class Frame(Base):
    rows = luigi.IntParameter(default=3)

    def run(self) -> None:
        self.dump(pd.DataFrame({"a": list(range(self.rows)), "b": [f"r{i}" for i in range(self.rows)]}))


class Formats(Base):
    def requires(self) -> Any:
        return {"frame": Frame(), "other": Frame(rows=2)}

    def output(self) -> Any:
        return {
            "pkl": self.make_target("formats/obj.pkl"),
            "csv": self.make_target("formats/frame.csv"),
            "tsv": self.make_target("formats/frame.tsv"),
            "txt": self.make_target("formats/lines.txt"),
            "json": self.make_target("formats/doc.json"),
            "gz": self.make_target("formats/obj.gz"),
            "feather": self.make_target("formats/frame.feather"),
            "parquet": self.make_target("formats/frame.parquet"),
        }

    def run(self) -> None:
        frame = self.load("frame")
        self.dump({"n": len(frame)}, "pkl")
        self.dump(frame, "csv")
        self.dump(frame, "tsv")
        self.dump(["a", "b"], "txt")
        self.dump({"k": [1, 2]}, "json")
        self.dump("zipped", "gz")
        self.dump(frame, "feather")
        self.dump(self.load("other"), "parquet")


class ListOut(Base):
    def requires(self) -> Any:
        return [Frame(rows=1), Frame(rows=4)]

    def output(self) -> Any:
        return [self.make_target("list/a.pkl"), self.make_target("list/b.pkl")]

    def run(self) -> None:
        a, b = self.load()
        first, second = self.output()
        self.dump(len(a), first)
        self.dump(len(b), second)


# -- gokart options ---------------------------------------------------------------------------------------------------
class Counted(Base):
    """Counts its runs in a file beside the workspace (to see rerun)."""

    def run(self) -> None:
        counter = Path("runs.txt")
        counter.write_text(str(int(counter.read_text() or "0") + 1 if counter.exists() else 1))
        self.dump(f"run {counter.read_text()}")


class Strict(Base):
    strict_check = True

    def requires(self) -> Any:
        return Frame(rows=5)

    def run(self) -> None:
        self.dump(len(self.load()))


class Uncached(Base):
    cache_unique_id = False

    def requires(self) -> Any:
        return Frame(rows=6)

    def run(self) -> None:
        self.dump(self.make_unique_id())


class Empty(Base):
    fail_on_empty_dump = True

    def run(self) -> None:
        self.dump(pd.DataFrame())


class Raises(Base):
    def run(self) -> None:
        raise ValueError("broken on purpose")


class MasterRaises(gokart.TaskOnKart[str]):  # always a master task
    def requires(self) -> Any:
        return Frame(rows=1)

    def run(self) -> None:
        raise KeyError("master side")


class RaisesBelow(gokart.TaskOnKart[str]):  # always a master task
    def requires(self) -> Any:
        return Raises()

    def run(self) -> None:
        self.dump("never")


# -- @requires / @inherits -----------------------------------------------------------------------------------------
class Upstream(Base):
    tag = luigi.Parameter(default="t")

    def run(self) -> None:
        self.dump(f"up-{self.tag}")


@luigi.util.requires(Upstream)
class Required(Base):
    def run(self) -> None:
        self.dump(self.load() + "+required")


@luigi.util.inherits(Upstream)
class Inherited(Base):
    def requires(self) -> Any:
        return self.clone(Upstream)

    def run(self) -> None:
        self.dump(self.load() + "+inherited")


# -- config (a config file, ${ENV} resolved by whoever runs the task) and task_namespace ------------------------------
class Configured(Base):
    greeting = luigi.Parameter(default="unset")
    from_env = luigi.Parameter(default="unset", significant=False)

    def run(self) -> None:
        self.dump(f"{self.greeting}/{self.from_env}/{os.environ.get('PARITY_GREETING')}")


class Spaced(Base):
    task_namespace = "parity_ns"

    def run(self) -> None:
        self.dump(self.get_task_family())


# -- point 8: a missing external input; modification_time_check --------------------------------------------------------
class MissingInput(luigi.ExternalTask):
    def output(self) -> Any:
        return gokart.target.make_target("resources/not-there.pkl")


class NeedsMissing(Base):
    def requires(self) -> Any:
        return MissingInput()

    def run(self) -> None:
        self.dump("never")


class FromTheFuture(gokart.TaskOnKart[str]):
    """A master task whose output's mtime is an hour ahead (a clock skew between machines sharing a workspace)."""

    def run(self) -> None:
        self.dump("future")
        path = self.output().path()
        future = os.path.getmtime(path) + 3600
        os.utime(path, (future, future))


class TimeChecked(Base):
    modification_time_check = True

    def requires(self) -> Any:
        return FromTheFuture()

    def run(self) -> None:
        self.dump(self.load() + "+checked")


assert issubclass(Base, TaskOnKart)


class MasterFirst(gokart.TaskOnKart[str]):
    """A master task that would run before a bullet whose module a child cannot import."""

    def run(self) -> None:
        self.dump("ran")


class SideRoot(gokart.TaskOnKart[str]):
    def requires(self) -> Any:
        import parity_needs_helper  # type: ignore[import-not-found]

        return [MasterFirst(), parity_needs_helper.NeedsHelper()]

    def run(self) -> None:
        self.dump("side root")


# -- luigi's status API from inside a task (issue 18 point 7): works under both, the value is the same -------------
class StatusReporting(Base):
    def run(self) -> None:
        self.set_status_message("halfway")
        self.set_progress_percentage(50)
        self.dump("reported")
