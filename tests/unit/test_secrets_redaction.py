"""PRIVATE and HIDDEN luigi parameters are never rendered by kannon (luigi's to_str_params(only_public=True))."""

from __future__ import annotations

import luigi
import pytest
from luigi.parameter import ParameterVisibility

from kannon import handoff
from kannon.plan import make_plan


class Guarded(luigi.Task):
    token = luigi.Parameter(visibility=ParameterVisibility.PRIVATE)
    hidden = luigi.Parameter(default="hid-Lm3", visibility=ParameterVisibility.HIDDEN)
    shown = luigi.Parameter()

    def complete(self) -> bool:
        return True


def test_the_rendered_parameters_are_luigis_public_ones() -> None:
    task = Guarded(token="tok-Qy7", shown="visible")
    public = task.to_str_params(only_significant=True, only_public=True)
    assert set(public) == {"shown"}  # the rule kannon follows, from luigi itself
    for text in (handoff.short_params(task), handoff.describe(task), make_plan(task, verify_handoff=False)
                 .nodes[handoff.unique_id(task)].params):  # fmt: skip
        assert "visible" in text and "tok-Qy7" not in text and "hid-Lm3" not in text, text


def test_a_mismatch_on_a_private_parameter_does_not_print_its_values() -> None:
    task = Guarded(token="tok-Qy7", shown="visible")
    declared = dict(Guarded.get_params())
    params = {"token": {"v": "tok-other"}, "hidden": {"v": "hid-Lm3"}, "shown": {"v": "visible"}}
    with pytest.raises(handoff.IdMismatchError, match="parameter token is '<private>'") as e:
        handoff.check_constructed(task, "x" * 32, params, declared)
    assert "tok-" not in str(e.value)
