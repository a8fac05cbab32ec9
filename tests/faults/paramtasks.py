"""A task with one parameter of every luigi/gokart parameter type, for the hand-off property tests.

A child imports this module by name, so the classes live at module level.
"""

from __future__ import annotations

import datetime
import enum
from pathlib import Path
from typing import Any

import gokart
import luigi
from luigi import date_interval
from luigi.parameter import ParameterVisibility

import kannon


class Color(enum.Enum):
    RED = 1
    GREEN = 2
    BLUE = 3


class Point:
    """A value for gokart.SerializableParameter: it (de)serializes itself."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def gokart_serialize(self) -> str:
        return f"{self.x},{self.y}"

    @classmethod
    def gokart_deserialize(cls, text: str) -> Point:
        x, y = text.split(",")
        return cls(int(x), int(y))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))


class ParamLeaf(gokart.TaskOnKart[str]):  # type: ignore[misc]
    """A task to pass as a TaskParameter (a class) or TaskInstanceParameter (an instance)."""

    tag = luigi.Parameter(default="leaf")

    def run(self) -> None:
        self.dump(self.tag)


CHOICES = ["a", "b;c", "d e", "$(x)", "ü"]
DAY = datetime.date(2024, 2, 29)
MOMENT = datetime.datetime(2024, 2, 29, 12, 30, 5)


class Every(kannon.TaskOnBullet[str]):
    """Every parameter type luigi 3.8 and gokart 1.12 ship; each with a default, so a test can set any subset."""

    s = luigi.Parameter(default="")
    st = luigi.StrParameter(default="")
    opt = luigi.OptionalParameter(default=None)
    ostr = luigi.OptionalStrParameter(default=None)
    i = luigi.IntParameter(default=0)
    oi = luigi.OptionalIntParameter(default=None)
    f = luigi.FloatParameter(default=0.0)
    of = luigi.OptionalFloatParameter(default=None)
    b = luigi.BoolParameter(default=False)
    ob = luigi.OptionalBoolParameter(default=None)
    eb = gokart.ExplicitBoolParameter(default=False)
    d = luigi.DateParameter(default=DAY)
    mo = luigi.MonthParameter(default=DAY.replace(day=1))
    y = luigi.YearParameter(default=DAY.replace(month=1, day=1))
    dh = luigi.DateHourParameter(default=MOMENT.replace(minute=0, second=0))
    dm = luigi.DateMinuteParameter(default=MOMENT.replace(second=0))
    ds = luigi.DateSecondParameter(default=MOMENT)
    zds = gokart.ZonedDateSecondParameter(default=MOMENT.replace(tzinfo=datetime.timezone.utc))
    di = luigi.DateIntervalParameter(default=date_interval.Date.from_date(DAY))
    td = luigi.TimeDeltaParameter(default=datetime.timedelta(seconds=1))
    tp = luigi.TaskParameter(default=ParamLeaf)
    en = luigi.EnumParameter(enum=Color, default=Color.RED)
    enl = luigi.EnumListParameter(enum=Color, default=())
    dct = luigi.DictParameter(default={})
    odct = luigi.OptionalDictParameter(default=None)
    lst = luigi.ListParameter(default=[])
    olst = luigi.OptionalListParameter(default=None)
    tup = luigi.TupleParameter(default=())
    otup = luigi.OptionalTupleParameter(default=None)
    num = luigi.NumericalParameter(var_type=int, min_value=-1000, max_value=1000, default=0)
    onum = luigi.OptionalNumericalParameter(var_type=float, min_value=-1.0, max_value=1.0, default=None)
    ch = luigi.ChoiceParameter(choices=CHOICES, default="a")
    chl = luigi.ChoiceListParameter(choices=CHOICES, default=())
    och = luigi.OptionalChoiceParameter(choices=CHOICES, default=None)
    pth = luigi.PathParameter(default=Path("data"))
    opth = luigi.OptionalPathParameter(default=None)
    ser = gokart.SerializableParameter(object_type=Point, default=Point(0, 0))
    upstream = gokart.TaskInstanceParameter(default=ParamLeaf())
    more = gokart.ListTaskInstanceParameter(default=[])
    note = luigi.Parameter(default="", significant=False)
    secret = luigi.Parameter(default="", visibility=ParameterVisibility.PRIVATE)

    def requires(self):  # type: ignore[no-untyped-def]
        return [self.upstream, *self.more]

    def run(self) -> None:
        self.dump("never run in these tests")


class ParamUntyped(kannon.TaskOnBullet[str]):
    """One untyped parameter: anything but a string changes type in a text round trip."""

    value = luigi.Parameter()

    def run(self) -> None:
        self.dump(str(self.value))


def names() -> list[str]:
    """Every's own parameters (not the ones it inherits from gokart.TaskOnKart)."""
    return [name for name, _ in Every.get_params() if name in vars(Every)]


def construct(values: dict[str, Any]) -> Every:
    return Every(**values)
