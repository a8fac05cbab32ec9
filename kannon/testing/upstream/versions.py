"""The upstream releases this tool builds: the one place they are pinned (docs/upstream.md says how to pick others).

Kubernetes must stay within the preinstalled kubectl's version skew (kubectl supports a server one minor older or
newer) and every ``k8s.io/<staging>`` module the commands import must be served at ``v0.<minor>.<patch>`` by the Go
module proxy; etcd must be a release that Kubernetes release supports (3.5.x or 3.6.x for current ones).
``KANNON_UPSTREAM_KUBERNETES`` / ``KANNON_UPSTREAM_ETCD`` override the pins (e.g. to try the next patch release).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

KUBERNETES = "v1.33.13"
ETCD = "v3.5.21"

_RELEASE = re.compile(r"^v\d+\.\d+\.\d+$")


def kubernetes_release() -> str:
    return _checked("KANNON_UPSTREAM_KUBERNETES", KUBERNETES)


def etcd_release() -> str:
    return _checked("KANNON_UPSTREAM_ETCD", ETCD)


def _checked(variable: str, default: str) -> str:
    value = os.environ.get(variable) or default
    if not _RELEASE.match(value):
        raise ValueError(f"{variable}={value!r} is not a release tag like {default}: fix or unset it")
    return value


def cache_root() -> Path:
    """Where built programs live, outside any checkout, so a machine builds each release once."""
    if os.environ.get("KANNON_UPSTREAM_CACHE"):
        return Path(os.environ["KANNON_UPSTREAM_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "kannon" / "upstream"
