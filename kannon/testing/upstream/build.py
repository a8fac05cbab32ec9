"""Build upstream kube-apiserver, kube-controller-manager, kube-scheduler and etcd from source with Go, once per
machine and release, into ``<cache>/<name>-<release>/bin``.

``go install k8s.io/kubernetes/cmd/...@vX`` is refused because k8s.io/kubernetes's go.mod ``replace``s its staging
modules with local directories (etcd's server module does the same with its siblings). So each build is a small
module of our own: it requires the upstream module and replaces every module upstream replaces with a local path
by the published release of that module (``k8s.io/<staging> v0.<minor>.<patch>``; etcd's siblings at the versions
its go.mod requires). ``go mod tidy`` then resolves the rest through the Go module proxy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import resource
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from kannon.testing.upstream.versions import cache_root, etcd_release, kubernetes_release


class BuildError(Exception):
    """The upstream programs could not be built; the message says why and what to do."""


class BadRelease(BuildError):
    """A release named in the environment is not a release tag."""


@dataclass(frozen=True)
class Programs:
    """One upstream module built into one cache directory."""

    name: str  # cache directory prefix
    module: str
    release: str
    commands: dict[str, str]  # binary name -> Go package

    @property
    def directory(self) -> Path:
        return cache_root() / f"{self.name}-{self.release}"

    @property
    def bin(self) -> Path:
        return self.directory / "bin"

    def path(self, binary: str) -> Path:
        return self.bin / binary

    def built(self) -> bool:
        stamp = self.directory / "build.json"
        return stamp.is_file() and all(self.path(b).is_file() for b in self.commands)


def kubernetes() -> Programs:
    commands = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    return Programs("kubernetes", "k8s.io/kubernetes", _release(kubernetes_release),
                    {c: f"k8s.io/kubernetes/cmd/{c}" for c in commands})  # fmt: skip


def etcd() -> Programs:
    # In 3.5 and 3.6 the server module's root package is etcd's main.
    return Programs("etcd", "go.etcd.io/etcd/server/v3", _release(etcd_release), {"etcd": "go.etcd.io/etcd/server/v3"})


def _release(read: Callable[[], str]) -> str:
    try:
        return read()
    except ValueError as e:
        raise BadRelease(str(e)) from None


def find_go() -> str:
    if os.environ.get("KANNON_GO"):
        if not os.access(os.environ["KANNON_GO"], os.X_OK):
            raise BuildError(f"KANNON_GO={os.environ['KANNON_GO']} is not an executable `go`: fix or unset it")
        return os.environ["KANNON_GO"]
    found = shutil.which("go")
    if not found and Path("/usr/local/go/bin/go").is_file():
        found = "/usr/local/go/bin/go"
    if not found:
        raise BuildError(
            "no Go toolchain found (looked at $KANNON_GO, PATH and /usr/local/go/bin/go): install Go 1.24 or newer "
            "to build the upstream Kubernetes control plane, or set KANNON_GO to its `go` binary"
        )
    return found


def ensure_built(log: bool = True) -> dict[str, Path]:
    """Every upstream binary by name, building what the cache lacks; BuildError when that fails."""
    paths: dict[str, Path] = {}
    for programs in (etcd(), kubernetes()):
        if not programs.built():
            build(programs, log=log)
        paths.update({b: programs.path(b) for b in programs.commands})
    return paths


def build(programs: Programs, log: bool = True) -> dict[str, object]:
    """Build ``programs`` into the cache (one builder at a time per directory); its figures, also kept in
    build.json beside the binaries."""
    go = find_go()
    programs.directory.mkdir(parents=True, exist_ok=True)
    with _locked(programs.directory / ".lock"):
        if programs.built():  # another process built it while we waited
            return dict(json.loads((programs.directory / "build.json").read_text()))
        if log:
            print(f"building {programs.module} {programs.release} (once per machine; a cold build of Kubernetes "
                  f"takes tens of minutes on 2 cores) into {programs.bin}", flush=True)  # fmt: skip
        src = programs.directory / "src"
        src.mkdir(exist_ok=True)
        logfile = programs.directory / "build.log"
        env = _go_env()
        upstream_mod = _download_mod(go, programs, env)
        (src / "go.mod").write_text(own_go_mod(programs, upstream_mod))
        imports = "\n".join(f'\t_ "{p}"' for p in programs.commands.values())
        (src / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
        started = time.monotonic()
        with logfile.open("w") as out:
            _run([go, "mod", "tidy"], src, env, out, logfile)
            for binary, package in programs.commands.items():
                command = [go, "build", "-trimpath", "-ldflags", _ldflags(programs), "-o", str(programs.path(binary))]
                _run(["nice", "-n", "15", *command, package], src, env, out, logfile)
        figures: dict[str, object] = {
            "module": programs.module,
            "release": programs.release,
            "go": subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False).stdout.strip(),
            "wall_seconds": round(time.monotonic() - started, 1),
            # The largest process waited for so far (the compiler or linker), in MiB: the build's memory peak.
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (programs.directory / "build.json").write_text(json.dumps(figures, indent=2) + "\n")
        if log:
            print(f"built {programs.module} {programs.release} in {figures['wall_seconds']} s", flush=True)
        return figures


def own_go_mod(programs: Programs, upstream_mod: str) -> str:
    """The go.mod of our build module, from the upstream module's go.mod text."""
    required = dict(re.findall(r"^\s*(?:require\s+)?(\S+)\s+(v\S+)\s*(?://.*)?$", upstream_mod, re.MULTILINE))
    local = re.findall(r"^\s*(?:replace\s+)?(\S+)\s+=>\s+\.\.?/\S*\s*$", upstream_mod, re.MULTILINE)
    minor_patch = programs.release.split(".", 1)[1]
    lines = []
    for module in local:
        version = required.get(module)
        if version is None:
            continue  # a guard such as etcd's `replace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY`
        if version.startswith("v0.0.0"):  # k8s.io staging modules are published as v0.<minor>.<patch>
            version = f"v0.{minor_patch}"
        lines.append(f"\t{module} => {module} {version}\n")
    go_directive = re.search(r"^go\s+(\S+)", upstream_mod, re.MULTILINE)
    return (
        f"// Generated by kannon.testing.upstream to build {programs.module} {programs.release}.\n"
        f"module kannon.local/build-{programs.name}\n\n"
        f"go {go_directive.group(1) if go_directive else '1.24'}\n\n"
        f"require {programs.module} {programs.release}\n\n"
        f"replace (\n{''.join(lines)})\n"
    )


def _ldflags(programs: Programs) -> str:
    flags = ["-s", "-w"]
    if programs.name == "kubernetes":
        # What upstream's release build stamps, so `kubectl version` and /version report the real release.
        major, minor = programs.release[1:].split(".")[:2]
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            flags += [f"-X {package}.gitVersion={programs.release}", f"-X {package}.gitMajor={major}",
                      f"-X {package}.gitMinor={minor}", f"-X {package}.gitTreeState=clean"]  # fmt: skip
    return " ".join(flags)


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GOTOOLCHAIN"] = "local"  # never fetch another toolchain
    env.setdefault("GOFLAGS", "-p=2")  # the machine is shared: two compilers at a time
    return env


def _download_mod(go: str, programs: Programs, env: dict[str, str]) -> str:
    result = subprocess.run(
        [go, "mod", "download", "-json", f"{programs.module}@{programs.release}"],
        cwd=programs.directory / "src", env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:
        info = json.loads(result.stdout)
    except json.JSONDecodeError:
        info = {}
    if result.returncode != 0 or "GoMod" not in info:
        raise BuildError(
            f"could not fetch {programs.module}@{programs.release} from the Go module proxy: "
            f"{(info.get('Error') or result.stderr).strip()}; check the network or pick another release "
            "(docs/upstream.md)"
        )
    return Path(info["GoMod"]).read_text()


def _run(command: list[str], cwd: Path, env: dict[str, str], out: IO[str], logfile: Path) -> None:
    print("$", " ".join(command), file=out, flush=True)
    result = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = "".join(logfile.read_text().splitlines(keepends=True)[-15:])
        raise BuildError(f"`{' '.join(command[:3])} ...` failed (exit {result.returncode}); log {logfile}:\n{tail}")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
