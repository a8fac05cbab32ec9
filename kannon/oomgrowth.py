"""Opt-in growth on OOM (issue 17): an OOM-killed attempt is retried with more memory, without spending ``retries``.

``Hints(oom_growth=1.5)`` (or ``kannon build --oom-growth 1.5``): the next attempt's memory hint — on every
backend both the request and the limit — is the last one times the factor, rounded up to a whole Mi, at most
:data:`MAX_STEPS` times per task and never above ``oom_growth_cap`` (``--oom-growth-cap``): an attempt already at
the cap is an ordinary failure, retried only if ``retries`` allow. A task without a memory hint has no limit of
kannon's to grow (its OOM came from the node or the engine) and is not grown.

Pure: the state machine (kannon.scheduler.state) asks :func:`grow` and keeps the count of steps per task.
"""

from __future__ import annotations

import dataclasses
import math

from kannon.hints import Hints, parse_memory

MAX_STEPS = 3
_MI = 2**20


def grow(hints: Hints, steps_done: int) -> tuple[Hints, str] | None:
    """The hints of the next attempt and a note for the retried event, or None when there is nothing to grow."""
    if not hints.oom_growth or hints.memory is None or steps_done >= MAX_STEPS:
        return None
    current = parse_memory(hints.memory)
    cap = parse_memory(hints.oom_growth_cap) if hints.oom_growth_cap is not None else None
    wanted = math.ceil(current * hints.oom_growth / _MI) * _MI
    if cap is not None:
        wanted = min(wanted, cap)
    if wanted <= current:
        return None
    memory = f"{wanted // _MI}Mi"
    step = steps_done + 1
    capped = " (the cap)" if cap is not None and wanted == cap else ""
    note = (f"retrying with memory {memory}{capped} = {hints.memory} x {hints.oom_growth:g} (OOM growth step {step} "
            f"of {MAX_STEPS}; does not count against retries)")  # fmt: skip
    return dataclasses.replace(hints, memory=memory), note
