"""Hypothesis profiles of the suite, loaded by tests/conftest.py.

"ci" is the default, so every run of the suite (CI=true or not) draws the same examples: a fresh clone is green or
red for the code, never for the draw. It has no deadline and no too_slow health check, both being timing, and this
suite runs on loaded 2-core machines. "explore" hunts with new random examples, 20 times as many, and prints the
blob that replays a find (bench/explore_properties.py, or `pytest --hypothesis-profile explore`).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

CI, EXPLORE = "ci", "explore"

settings.register_profile(CI, derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
settings.register_profile(EXPLORE, max_examples=2000, derandomize=False, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip


def examples(ci: int) -> int:
    """``ci`` examples under the "ci" profile, scaled like the active profile's max_examples (20x under "explore"):
    for a test that sets its own max_examples, which a profile would otherwise leave as it is."""
    return max(1, ci * settings.default.max_examples // 100)
