"""Start and stop a real control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

Everything lives in one state directory: credentials (pki/), etcd's data, one log per program (logs/), kubeconfigs
and state.json, which records each started process with its pid and kernel start time, so ``stop`` (also from
another process: ``python -m kannon.testing.upstream down``) signals exactly what was started and nothing else,
even if a pid was reused since.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from kannon.testing.upstream.build import ensure_built
from kannon.testing.upstream.pki import Credentials, make_credentials

ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
SERVICE_CIDR = "10.96.0.0/24"  # only allocated from (the `kubernetes` Service); nothing is routed there
ISSUER = "https://kubernetes.default.svc"


class StartError(Exception):
    """A program did not start or become healthy; the message names it and quotes its log."""


def default_state_dir() -> Path:
    return Path(os.environ.get("TMPDIR", "/tmp")) / f"kannon-upstream-{os.getuid()}"


class ControlPlane:
    """``with ControlPlane(dir) as cp:`` starts everything (building the programs first if the cache lacks them)
    and stops it on exit; ``cp.kubeconfig`` is an admin kubeconfig."""

    def __init__(self, state_dir: Path | None = None, die_with_parent: bool = False) -> None:
        """``die_with_parent``: the kernel SIGTERMs the programs when this process dies (a test session that is
        killed must not leave a control plane behind); off for ``up``, whose programs outlive the command."""
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self.die_with_parent = die_with_parent
        self.creds = Credentials(self.state_dir / "pki")
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # --- paths and clients ------------------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.kubeconfig_for("admin")

    def kubeconfig_for(self, user: str) -> Path:
        return self.state_dir / f"{user.replace(':', '-')}.kubeconfig"

    @property
    def state(self) -> dict[str, Any]:
        path = self.state_dir / "state.json"
        return dict(json.loads(path.read_text())) if path.is_file() else {}

    @property
    def server(self) -> str:
        return str(self.state["server"])

    def api_client(self, user: str = "admin") -> Any:
        """An official-client ApiClient for ``user`` (see pki.USERS), built from that user's kubeconfig."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig_for(user)))

    def running(self) -> bool:
        processes = self.state.get("processes", [])
        return bool(processes) and all(_alive(p["pid"], p["start_time"]) for p in processes)

    # --- lifecycle --------------------------------------------------------------------------------------------
    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self, timeout: float = 240.0) -> None:
        """Start all four programs in order, each healthy before the next; StartError (after stopping what did
        start) when one is not."""
        binaries = ensure_built()
        if self.state.get("processes"):
            self.stop()  # leftovers of an earlier run in this directory: ours to stop
        for leftover in ("etcd-data", "logs"):
            shutil.rmtree(self.state_dir / leftover, ignore_errors=True)
        (self.state_dir / "logs").mkdir(parents=True)
        make_credentials(self.creds.directory)
        ports = {name: _free_port() for name in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler")}
        server = f"https://127.0.0.1:{ports['apiserver']}"
        self._write_state({"server": server, "ports": ports, "processes": []})
        for user in ("admin", "system:kube-controller-manager", "system:kube-scheduler", "kannon-restricted"):
            self._write_kubeconfig(user, server)
        deadline = time.monotonic() + timeout
        try:
            self._spawn("etcd", [str(binaries["etcd"]), *self._etcd_flags(ports)])
            self._wait_healthy("etcd", f"http://127.0.0.1:{ports['etcd']}/health", deadline)
            self._spawn("kube-apiserver", [str(binaries["kube-apiserver"]), *self._apiserver_flags(ports)])
            self._wait_healthy("kube-apiserver", f"{server}/readyz", deadline, token=self.creds.token("admin"))
            self._spawn("kube-controller-manager",
                        [str(binaries["kube-controller-manager"]), *self._controller_manager_flags(ports)])  # fmt: skip
            self._wait_healthy("kube-controller-manager", f"https://127.0.0.1:{ports['controller-manager']}/healthz",
                               deadline)  # fmt: skip
            self._spawn("kube-scheduler", [str(binaries["kube-scheduler"]), *self._scheduler_flags(ports)])
            self._wait_healthy("kube-scheduler", f"https://127.0.0.1:{ports['scheduler']}/healthz", deadline)
            # Pods are refused until their namespace's `default` ServiceAccount exists: wait for the controller.
            self._wait_healthy("kube-controller-manager (default ServiceAccount)",
                               f"{server}/api/v1/namespaces/default/serviceaccounts/default", deadline,
                               token=self.creds.token("admin"))  # fmt: skip
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 60.0) -> None:
        """Stop every recorded process, newest first, waiting for each (SIGTERM, then SIGKILL after ``timeout``):
        an API server whose etcd went first keeps retrying and logging."""
        state = self.state
        for process in reversed(state.get("processes", [])):
            pid, start_time = process["pid"], process["start_time"]
            if _alive(pid, start_time):
                os.kill(pid, signal.SIGTERM)
                if not self._wait_gone(pid, start_time, timeout):
                    os.kill(pid, signal.SIGKILL)
                    self._wait_gone(pid, start_time, timeout)
            child = self._children.pop(pid, None)
            if child is not None:
                child.wait()  # reap it
            state["processes"].remove(process)
            self._write_state(state)

    # --- internals --------------------------------------------------------------------------------------------
    def _etcd_flags(self, ports: dict[str, int]) -> list[str]:
        client, peer = f"http://127.0.0.1:{ports['etcd']}", f"http://127.0.0.1:{ports['etcd-peer']}"
        return [
            "--name=kannon", f"--data-dir={self.state_dir / 'etcd-data'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}", f"--initial-cluster=kannon={peer}",
            # Throw-away data on a shared, loaded disk: fsync only slows the tests down.
            "--unsafe-no-fsync",
        ]  # fmt: skip

    def _apiserver_flags(self, ports: dict[str, int]) -> list[str]:
        c = self.creds
        return [
            f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
            "--bind-address=127.0.0.1", f"--secure-port={ports['apiserver']}", "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",  # the advertise address is loopback: no endpoints for it
            f"--tls-cert-file={c.serving_cert}", f"--tls-private-key-file={c.serving_key}", f"--client-ca-file={c.ca}",
            "--authorization-mode=RBAC", f"--token-auth-file={c.token_file}", "--anonymous-auth=false",
            f"--service-account-issuer={ISSUER}", f"--api-audiences={ISSUER}",
            f"--service-account-key-file={c.sa_pub}", f"--service-account-signing-key-file={c.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", f"--cert-dir={self.state_dir / 'pki'}", "--profiling=false",
            # pods/log is proxied to the node's kubelet endpoint (kannon.testing.node) at its InternalIP, verified
            # with our CA: kannon's node serves with the 127.0.0.1 serving certificate (`node_flags`).
            f"--kubelet-certificate-authority={c.ca}", "--kubelet-preferred-address-types=InternalIP",
        ]  # fmt: skip

    def node_flags(self) -> list[str]:
        """Arguments of ``python -m kannon.testing.node`` for a node of this control plane: the admin's kubeconfig
        and the serving certificate the API server accepts for the log endpoint on 127.0.0.1."""
        return [f"--kubeconfig={self.kubeconfig}", f"--tls-cert-file={self.creds.serving_cert}",
                f"--tls-private-key-file={self.creds.serving_key}"]  # fmt: skip

    def _component_flags(self, user: str, port: int) -> list[str]:
        kubeconfig = self.kubeconfig_for(user)
        return [
            f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}", "--bind-address=127.0.0.1", f"--secure-port={port}",
            f"--tls-cert-file={self.creds.serving_cert}", f"--tls-private-key-file={self.creds.serving_key}",
            "--leader-elect=false", "--profiling=false",
        ]  # fmt: skip

    def _controller_manager_flags(self, ports: dict[str, int]) -> list[str]:
        return [
            *self._component_flags("system:kube-controller-manager", ports["controller-manager"]),
            # The default set: job, garbage-collector, ttl-after-finished, serviceaccount, serviceaccount-token
            # (enabled by the private key below), node-lifecycle, ... each with its own service account.
            "--controllers=*", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={self.creds.sa_key}", f"--root-ca-file={self.creds.ca}",
        ]  # fmt: skip

    def _scheduler_flags(self, ports: dict[str, int]) -> list[str]:
        return self._component_flags("system:kube-scheduler", ports["scheduler"])

    def _spawn(self, name: str, command: list[str]) -> None:
        log = (self.state_dir / "logs" / f"{name}.log").open("ab")
        # Its own session: an `up` from a shell returns and the programs outlive it; a terminal's ^C is not theirs.
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=self.state_dir,
                                preexec_fn=_set_parent_death_signal if self.die_with_parent else None)  # fmt: skip
        log.close()
        self._children[proc.pid] = proc
        state = self.state
        state["processes"].append({"name": name, "pid": proc.pid, "start_time": _start_time(proc.pid)})
        self._write_state(state)

    def _wait_healthy(self, name: str, url: str, deadline: float, token: str | None = None) -> None:
        context = ssl.create_default_context(cafile=str(self.creds.ca)) if url.startswith("https") else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        last = "no answer yet"
        while time.monotonic() < deadline:
            for pid, proc in self._children.items():
                if proc.poll() is not None:
                    program = next(p["name"] for p in self.state["processes"] if p["pid"] == pid)
                    raise StartError(f"{program} exited with {proc.returncode} while waiting for {name}:\n"
                                     f"{self.log_tail(program)}")  # fmt: skip
            try:
                request = urllib.request.Request(url, headers=headers)  # noqa: S310 (http(s) URLs we built)
                with urllib.request.urlopen(request, timeout=5, context=context) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            time.sleep(0.2)  # polling interval of a health endpoint, not a guessed duration
        program = name.split(" ")[0]
        raise StartError(f"{name} not healthy at {url} in time (last: {last}):\n{self.log_tail(program)}")

    def log_tail(self, program: str, lines: int = 20) -> str:
        path = self.state_dir / "logs" / f"{program}.log"
        text = path.read_text(errors="replace").splitlines() if path.is_file() else []
        return "\n".join(text[-lines:]) + f"\n(full log: {path})"

    def _wait_gone(self, pid: int, start_time: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            child = self._children.get(pid)
            if child is not None and child.poll() is not None:
                return True
            if child is None and not _alive(pid, start_time):
                return True
            time.sleep(0.05)  # polling for the exit of a process that is not our child
        return False

    def _write_kubeconfig(self, user: str, server: str) -> None:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "kannon-upstream",
            "clusters": [{"name": "kannon-upstream",
                          "cluster": {"server": server, "certificate-authority": str(self.creds.ca)}}],
            "users": [{"name": user, "user": {"token": self.creds.token(user)}}],
            "contexts": [{"name": "kannon-upstream",
                          "context": {"cluster": "kannon-upstream", "user": user, "namespace": "default"}}],
        }  # fmt: skip
        path = self.kubeconfig_for(user)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

    def _write_state(self, state: dict[str, Any]) -> None:
        path = self.state_dir / "state.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(path)


def _set_parent_death_signal() -> None:
    # Runs in the child between fork and exec: prctl(PR_SET_PDEATHSIG, SIGTERM).
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_time(pid: int) -> int:
    """The kernel's start time of ``pid`` (clock ticks since boot): with the pid, it names one process for good."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def _alive(pid: int, start_time: int) -> bool:
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0] != "Z" and int(fields[19]) == start_time
    return False
