"""The emulator's front door (issue 12): HTTPS with a CA of its own and a bearer token, like a real API server.

* kubernetes.io/docs/reference/access-authn-authz/authentication/: a request whose bearer token does not authenticate
  is answered 401 (a Status with reason Unauthorized); with anonymous requests limited to the health endpoints
  (AuthenticationConfiguration ``anonymous.conditions``, KEP-4633), a request without credentials elsewhere is 401 as
  well, while ``/healthz``, ``/livez``, ``/readyz`` and ``/version`` (the default ``system:public-info-viewer``
  ClusterRole) answer anyone.
* kubernetes.io/docs/concepts/configuration/organize-cluster-access-kubeconfig/: the kubeconfig carries the cluster's
  CA (``certificate-authority-data``) and the user's ``token``; nothing in it turns verification off.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from kannon.testing import KubeEmulator

pytestmark = pytest.mark.k8s

UNAUTHORIZED = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized",
                "reason": "Unauthorized", "code": 401}  # fmt: skip
PATH = "/api/v1/namespaces/default/secrets"


def raw_get(kube: KubeEmulator, path: str, token: str | None = "") -> tuple[int, Any]:
    conn = kube.connection(timeout=30, token=token)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def core(kube: KubeEmulator, token: str | None) -> Any:
    cfg = kube.configuration()
    cfg.api_key = {} if token is None else {"authorization": f"Bearer {token}"}
    return client.CoreV1Api(client.ApiClient(cfg))


def test_raw_requests_need_the_token_401_without_401_wrong_200_right(kube: KubeEmulator) -> None:
    assert raw_get(kube, PATH, token=None) == (401, UNAUTHORIZED)
    assert raw_get(kube, PATH, token="not-the-token") == (401, UNAUTHORIZED)
    code, body = raw_get(kube, PATH)
    assert (code, body["kind"]) == (200, "SecretList")


def test_the_official_client_needs_the_token(kube: KubeEmulator) -> None:
    for token in (None, "not-the-token", kube.token[:-1]):
        with pytest.raises(ApiException) as err:
            core(kube, token).list_namespaced_secret("default")
        assert err.value.status == 401 and json.loads(err.value.body) == UNAUTHORIZED
    assert core(kube, kube.token).list_namespaced_secret("default").items == []
    assert client.CoreV1Api(kube.api_client()).list_namespaced_secret("default").items == []


def test_health_and_version_answer_without_a_token(kube: KubeEmulator) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        conn = kube.connection(token=None)
        conn.request("GET", path)
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"ok"), path
        conn.close()
    code, body = raw_get(kube, "/version", token=None)
    assert code == 200 and body["major"] == "1"
    assert raw_get(kube, "/api", token=None)[0] == 401


def test_each_emulator_has_its_own_token_and_ca(kube: KubeEmulator) -> None:
    with KubeEmulator() as other:
        assert other.token != kube.token
        assert raw_get(other, PATH, token=kube.token)[0] == 401
        # A client that trusts only the other emulator's CA refuses this one's certificate.
        port = int(kube.url.rsplit(":", 1)[1])
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=other.ssl_context())
        with pytest.raises(ssl.SSLCertVerificationError):
            conn.request("GET", "/healthz")
        conn.close()


def test_plain_http_gets_no_answer(kube: KubeEmulator) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", int(kube.url.rsplit(":", 1)[1]), timeout=30)
    conn.request("GET", PATH)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, http.client.BadStatusLine)):
        conn.getresponse()
    conn.close()


def test_the_kubeconfig_carries_ca_and_token_and_verifies(kube: KubeEmulator, tmp_path: Path) -> None:
    path = kube.write_kubeconfig(tmp_path / "kubeconfig")
    doc = yaml.safe_load(path.read_text())
    cluster, user = doc["clusters"][0]["cluster"], doc["users"][0]["user"]
    assert "insecure-skip-tls-verify" not in cluster and cluster["server"] == kube.url
    assert cluster["certificate-authority-data"] and user == {"token": kube.token}
    assert path.stat().st_mode & 0o077 == 0  # it holds the token: owner only
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=cfg)
    assert cfg.verify_ssl and cfg.ssl_ca_cert
    assert client.CoreV1Api(client.ApiClient(cfg)).list_namespaced_secret("default").items == []


def test_the_ssl_context_verifies_the_host_name(kube: KubeEmulator) -> None:
    ctx = kube.ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


@pytest.mark.parametrize("goodbye", ["close_notify", "eof"])
def test_a_watch_ends_when_its_tls_client_leaves(kube: KubeEmulator, goodbye: str) -> None:
    """client-go ends a connection with a TLS close_notify, Python's ssl with a bare EOF: either way the emulator
    stops serving the watch (it would otherwise hold a thread and a store watcher until it stops)."""
    conn = kube.connection()
    conn.request("GET", "/api/v1/namespaces/default/pods?watch=true")
    resp = conn.getresponse()
    assert resp.status == 200
    kube.wait_for(lambda: len(kube.store._watchers) == 1)
    assert isinstance(conn.sock, ssl.SSLSocket)
    if goodbye == "close_notify":
        conn.sock.settimeout(60)
        with contextlib.suppress(OSError, ValueError):  # the emulator hangs up rather than answer in kind
            conn.sock.unwrap()
    resp.close()
    conn.close()
    kube.wait_for(lambda: not kube.store._watchers, timeout=60)
