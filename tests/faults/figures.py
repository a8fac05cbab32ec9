"""The fault suite's figures: what was injected, survived and found. One instance per pytest session (FIGURES),
printed by the conftest's terminal summary; bench/faults_long.py fills its own."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Figures:
    kill_points: int = 0  # master SIGKILLs survived (the rerun completed with every output written exactly once)
    faults: Counter[str] = field(default_factory=Counter)  # fault class -> injections that really happened
    tasks_run_more_than_once: int = 0
    orphans: int = 0  # processes / containers / Jobs / pods left behind
    bad_inputs_tried: int = 0
    bad_inputs_rejected: int = 0  # rejected cleanly: the right error, nothing run
    campaigns: list[str] = field(default_factory=list)

    def fault(self, kind: str, n: int = 1) -> None:
        assert n > 0, f"a fault of class {kind!r} was meant to be injected but was not"
        self.faults[kind] += n

    def bad_input(self, rejected: bool) -> None:
        self.bad_inputs_tried += 1
        self.bad_inputs_rejected += int(rejected)

    @property
    def used(self) -> bool:
        return bool(self.kill_points or self.faults or self.bad_inputs_tried or self.campaigns)

    def lines(self) -> list[str]:
        out = [
            f"kill points survived (master SIGKILL, then rerun): {self.kill_points}",
            f"faults injected: {sum(self.faults.values())}",
            *(f"  {kind:<42} {n}" for kind, n in sorted(self.faults.items())),
            f"tasks run more than once (must be 0): {self.tasks_run_more_than_once}",
            f"orphans left (must be 0): {self.orphans}",
            f"bad inputs tried: {self.bad_inputs_tried}, rejected cleanly: {self.bad_inputs_rejected}",
        ]
        out += [f"campaign {c}" for c in self.campaigns]
        return out


FIGURES = Figures()
