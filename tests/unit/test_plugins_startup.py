"""Every build loads every installed plugin (observer hooks must reach them all), so loading the built-in backends
must stay cheap: none of them may pull in its heavy dependencies (kubernetes, the docker SDK, PyYAML) just to
register."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("kubernetes", "docker", "yaml")


def test_loading_the_plugins_imports_no_backend_dependency() -> None:
    code = (
        "import json, sys, kannon.scheduler\n"
        "from kannon.plugins import plugin_manager\n"
        "before = set(sys.modules)\n"
        "pm = plugin_manager()\n"
        "names = sorted(name for name, _ in pm.list_name_plugin())\n"
        "print(json.dumps({'new': sorted(set(sys.modules) - before), 'plugins': names}))\n"
    )
    out = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert {"local", "docker", "kubernetes"} <= set(out["plugins"])
    heavy = [m for m in out["new"] if m.split(".")[0] in HEAVY]
    assert heavy == [], f"loading the plugins imported {heavy}"
