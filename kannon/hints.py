"""Per-task resource and execution hints.

Plain data with no gokart and no backend knowledge, so that every backend can read it and the planner can
validate it before anything is launched. Quantities use Kubernetes notation on every backend ("500m" cpu,
"512Mi" memory) so a pipeline moves between backends unchanged.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_MEMORY_SUFFIXES = {
    "": 1,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def parse_memory(value: str | int) -> int:
    """Bytes in a Kubernetes memory quantity ("512Mi", "2G", 1048576)."""
    if isinstance(value, bool):
        raise ValueError(f"memory must be a quantity like '512Mi', not {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"memory must be positive, got {value}")
        return value
    m = _QUANTITY.match(str(value).strip())
    if not m or m.group(2) == "m":
        raise ValueError(f"memory {value!r} is not a quantity like '512Mi', '2Gi' or '1G'")
    number = float(m.group(1)) * _MEMORY_SUFFIXES[m.group(2) or ""]
    if number < 1:
        raise ValueError(f"memory {value!r} is less than one byte")
    return int(number)


def parse_cpu(value: str | float | int) -> float:
    """Cores in a Kubernetes cpu quantity ("500m", "2", 0.5)."""
    if isinstance(value, bool):
        raise ValueError(f"cpu must be a quantity like '500m' or 2, not {value!r}")
    if isinstance(value, (int, float)):
        cores = float(value)
    else:
        m = _QUANTITY.match(value.strip())
        if not m or (m.group(2) not in (None, "m")):
            raise ValueError(f"cpu {value!r} is not a quantity like '500m', '2' or 0.5")
        cores = float(m.group(1)) / (1000 if m.group(2) == "m" else 1)
    if cores < 0.001:
        raise ValueError(f"cpu {value!r} must be at least 1m (0.001 cores)")
    return cores


@dataclass(frozen=True)
class Hints:
    """What a bullet needs to run. ``None`` means "backend / template default".

    ``retries`` and ``timeout`` are honoured by the core on every backend; resources are mapped by each backend
    (Kubernetes requests/limits, Docker cgroup limits, local rlimits) as documented per backend.
    """

    cpu: str | float | None = None
    memory: str | None = None
    gpu: int | None = None
    image: str | None = None
    node_selector: Mapping[str, str] | None = None
    tolerations: Sequence[Mapping[str, Any]] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    retries: int | None = None
    timeout: float | None = None
    oom_growth: float | None = None  # opt-in: an OOM-killed attempt is retried with memory x this (kannon.oomgrowth)
    oom_growth_cap: str | None = None  # ... never above this memory quantity

    def merged(self, override: Hints) -> Hints:
        """``override``'s set fields win; env maps are merged."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(override, f.name)
            if f.name == "env":
                values["env"] = {**mine, **theirs}
            else:
                values[f.name] = theirs if theirs is not None else mine
        return Hints(**values)

    def errors(self) -> list[str]:
        """Human-readable problems; empty when valid."""
        problems: list[str] = []
        if self.cpu is not None:
            try:
                parse_cpu(self.cpu)
            except (ValueError, AttributeError) as e:
                problems.append(str(e))
        if self.memory is not None:
            try:
                parse_memory(self.memory)
            except (ValueError, AttributeError) as e:
                problems.append(str(e))
        if self.gpu is not None and (isinstance(self.gpu, bool) or not isinstance(self.gpu, int) or self.gpu < 0):
            problems.append(f"gpu must be a whole number >= 0, got {self.gpu!r}")
        if self.image is not None and (not isinstance(self.image, str) or not self.image.strip() or " " in self.image):
            problems.append(f"image must be an image reference like 'repo/name:tag', got {self.image!r}")
        if self.retries is not None and (
            isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0
        ):
            problems.append(f"retries must be a whole number >= 0, got {self.retries!r}")
        if self.timeout is not None and (
            isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or self.timeout <= 0
        ):
            problems.append(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        if self.oom_growth is not None and (
            isinstance(self.oom_growth, bool) or not isinstance(self.oom_growth, (int, float))
            or not 1 < self.oom_growth <= 10
        ):  # fmt: skip
            problems.append(f"oom_growth must be a factor above 1 (at most 10) like 1.5, got {self.oom_growth!r}")
        if self.oom_growth_cap is not None:
            try:
                parse_memory(self.oom_growth_cap)
            except (ValueError, AttributeError) as e:
                problems.append(f"oom_growth_cap: {e}")
        if self.node_selector is not None:
            if not isinstance(self.node_selector, Mapping):
                problems.append(f"node_selector must be a mapping of label to value, got {self.node_selector!r}")
            else:
                for k, v in self.node_selector.items():
                    if not isinstance(k, str) or not _LABEL_KEY.match(k) or not isinstance(v, str):
                        problems.append(f"node_selector entry {k!r}: {v!r} is not a valid label key and string value")
        if self.tolerations is not None:
            if isinstance(self.tolerations, (str, bytes)) or not isinstance(self.tolerations, Sequence):
                problems.append("tolerations must be a list of mappings")
            else:
                for t in self.tolerations:
                    if not isinstance(t, Mapping) or not set(t) <= _TOLERATION_KEYS:
                        problems.append(f"toleration {t!r} may only use the keys {sorted(_TOLERATION_KEYS)}")
        if not isinstance(self.env, Mapping):
            problems.append(f"env must be a mapping of name to string, got {self.env!r}")
        else:
            for k, v in self.env.items():
                if not isinstance(k, str) or not _ENV_NAME.match(k) or not isinstance(v, str):
                    problems.append(f"env entry {k!r}={v!r}: names are identifiers and values are strings")
        return problems

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else parse_memory(self.memory)

    @property
    def cpu_cores(self) -> float | None:
        return None if self.cpu is None else parse_cpu(self.cpu)
