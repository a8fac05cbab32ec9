"""Every build loads every installed plugin (observer hooks must reach them all), so loading the built-in backends
must stay cheap: none of them may pull in its heavy dependencies (kubernetes, the docker SDK, PyYAML) just to
register."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("kubernetes", "docker", "yaml")
REPO = Path(__file__).resolve().parents[2]


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
    # Nor the backends' own modules (~23 ms at every build and CLI start): registering needs the package only (and
    # docker's classify, a name of the package that is also one of its modules, so it cannot be loaded lazily).
    own = [m for m in out["new"] if m.startswith(("kannon.backends.kubernetes.", "kannon.backends.docker."))]
    assert own in ([], ["kannon.backends.docker.classify"]), f"loading the plugins imported {own}"


def test_a_backend_package_still_offers_its_names_and_its_backend() -> None:
    code = (
        "import json\n"
        "from kannon.backends.kubernetes import K8sJobExecutor, LABEL_RUN, render_rbac\n"
        "from kannon.backends.docker import DockerExecutor, parse_env\n"
        "import kannon.backends.kubernetes as k8s\n"
        "from kannon.plugins import backends\n"
        "found = backends()\n"
        "names = [K8sJobExecutor.__name__, LABEL_RUN, DockerExecutor.__name__, parse_env.__name__]\n"
        "print(json.dumps({'k8s': found['kubernetes'].factory.__module__, 'docker': found['docker'].factory.__name__,\n"
        "                  'names': names, 'missing': not hasattr(k8s, 'no_such_name')}))\n"
    )
    out = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert out == {"k8s": "kannon.backends.kubernetes.compat", "docker": "DockerExecutor",
                   "names": ["K8sJobExecutor", "kannon.io/run-id", "DockerExecutor", "parse_env"], "missing": True}


def test_a_build_through_the_python_api_imports_no_console_library(tmp_path: Path) -> None:
    """rich draws the CLI's live view and summary; a build from Python has neither, and importing rich took ~50 ms
    (~100 ms on a loaded machine) of the quick-start's wall time. With ``follow_logs`` the API prints child lines
    through a plain LogPrinter."""
    code = (
        "import json, sys\n"
        "import kannon\n"
        "from kannon.backends.local import LocalExecutor\n"
        "from tests.support.tasks import Bullet, Leaf\n"
        f"ws = {str(tmp_path)!r}\n"
        "ok = []\n"
        "for follow in (False, True):\n"
        "    task = Bullet(name=f'api-{follow}', parents=[Leaf(name='l', workspace_directory=ws)],\n"
        "                  workspace_directory=ws)\n"
        "    ok.append(kannon.Kannon(executor=LocalExecutor(), follow_logs=follow).build(task).ok)\n"
        "print(json.dumps({'ok': ok, 'console': sorted(m for m in sys.modules if m.split('.')[0] == 'rich'\n"
        "                                              or m == 'kannon.progress.console')}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["ok"] == [True, True]
    assert out["console"] == []
