"""Masking the run's secret values (logtail.mask), and which values are too short to mask."""

from __future__ import annotations

from kannon import logtail


def test_values_are_masked_longest_first_and_short_ones_are_named_instead() -> None:
    secrets = {"A": "s3cr3t-value", "B": "s3cr3t-value-longer", "C": "abc", "D": ""}
    values = logtail.maskable(secrets)
    assert values == ("s3cr3t-value-longer", "s3cr3t-value")
    assert logtail.mask("x s3cr3t-value-longer y s3cr3t-value", values) == "x *** y ***"
    assert logtail.mask("abc stays", values) == "abc stays"
    assert logtail.too_short(secrets) == ["C"]
