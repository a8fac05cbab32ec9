"""Plugin manager and backend registry: entry points in, named backend factories out."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pluggy

from kannon import hookspecs
from kannon.backends.base import Executor

ENTRY_POINT_GROUP = "kannon"


@dataclass(frozen=True)
class BackendSpec:
    """How to make one backend, from Python (``factory(**kwargs)``) or from the CLI."""

    name: str
    factory: Callable[..., Executor]
    description: str = ""
    #: adds the backend's own options to ``kannon build`` (an argparse argument group)
    add_options: Callable[[argparse._ArgumentGroup], None] | None = None
    #: builds the executor from parsed CLI options (defaults to ``factory()``)
    from_options: Callable[[argparse.Namespace], Executor] | None = None
    source: str = field(default="", compare=False)  # filled in by the registry: where it came from

    def from_cli(self, ns: argparse.Namespace) -> Executor:
        return self.from_options(ns) if self.from_options else self.factory()


class UnknownBackendError(LookupError):
    pass


class PluginLoadError(RuntimeError):
    pass


_lock = threading.Lock()
_pm: pluggy.PluginManager | None = None
_load_errors: list[str] = []
_dists: dict[str, importlib.metadata.Distribution] = {}  # plugin name -> the distribution that announced it


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager with every installed ``kannon`` entry point loaded.

    A plugin that fails to import does not take the others down: the failure is kept and reported by name
    (``kannon backends`` shows it; asking for a backend it would have provided raises it).

    Every build calls this (observer hooks such as ``kannon_event`` must reach every installed plugin), so it is
    on the start-up path: the built-in backend packages load their modules on first use (kannon.lazy) and keep
    their heavy imports inside functions, and the distributions' metadata is only read when a backend's source is
    asked for.
    """
    global _pm
    with _lock:
        if _pm is None:
            pm = pluggy.PluginManager("kannon")
            pm.add_hookspecs(hookspecs)
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                    continue
                try:
                    plugin = ep.load()
                except Exception as e:  # any import-time error of third-party code
                    dist = ep.dist.name if ep.dist else "?"
                    _load_errors.append(
                        f"plugin {ep.name!r} ({ep.value}, from distribution {dist}) failed to import: "
                        f"{type(e).__name__}: {e}"
                    )
                    continue
                pm.register(plugin, name=ep.name)
                if ep.dist is not None:
                    _dists[ep.name] = ep.dist
            _pm = pm
        return _pm


def load_errors() -> list[str]:
    plugin_manager()
    return list(_load_errors)


def backends() -> dict[str, BackendSpec]:
    """Every installed backend by name, each tagged with the plugin (and distribution) it came from."""
    pm = plugin_manager()
    found: dict[str, BackendSpec] = {}
    for impl in pm.hook.kannon_backends.get_hookimpls():
        plugin_name = pm.get_name(impl.plugin) or "?"
        distribution = _dists.get(plugin_name)
        dist = f"{distribution.name} {distribution.version}" if distribution is not None else ""
        specs = cast("list[BackendSpec]", impl.function() or [])
        for spec in specs:
            source = f"{plugin_name} ({dist})" if dist else plugin_name
            if spec.name in found:
                _load_errors.append(
                    f"backend {spec.name!r} from {source} ignored: already provided by {found[spec.name].source}"
                )
                continue
            found[spec.name] = BackendSpec(
                spec.name, spec.factory, spec.description, spec.add_options, spec.from_options, source
            )
    return found


#: kannon's own backends whose client library is an optional extra: factory package -> (import name, extra)
_EXTRAS = {"kannon.backends.docker": ("docker", "docker")}


def missing_extra(spec: BackendSpec) -> str | None:
    """What to install for a backend whose client library is missing (None: it can be used)."""
    factory_module = getattr(spec.factory, "__module__", "")
    need = next((v for k, v in _EXTRAS.items() if factory_module == k or factory_module.startswith(k + ".")), None)
    if need is None:
        return None
    module, extra = need
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"the {module} SDK is not installed: pip install 'kannon[{extra}]'"


def get_backend(name: str) -> BackendSpec:
    available = backends()
    if name in available:
        return available[name]
    errors = [e for e in load_errors() if repr(name) in e]
    hint = ("; " + "; ".join(errors)) if errors else ""
    raise UnknownBackendError(
        f"unknown backend {name!r}; installed backends: {', '.join(sorted(available)) or 'none'}{hint}. "
        "Run `kannon backends` to see where each comes from."
    )


def make_executor(name: str, **kwargs: Any) -> Executor:
    return get_backend(name).factory(**kwargs)


def reset_for_tests() -> None:
    """Forget loaded plugins (tests that install/uninstall plugin packages)."""
    global _pm
    with _lock:
        _pm = None
        _load_errors.clear()
        _dists.clear()
