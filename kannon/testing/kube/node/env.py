"""A container's environment as the kubelet composes it: env, envFrom, fieldRef/resourceFieldRef, Secrets and
ConfigMaps, and $(VAR) expansion."""

from __future__ import annotations

import os
import re
from typing import Any

from kannon.testing.kube import secrets
from kannon.testing.kube.store import Obj, Store
from kannon.testing.kube.validation import parse_quantity


def expand(value: str, env: dict[str, str]) -> str:
    """$(VAR) expansion of env values, command and args (k8s.io/kubernetes/third_party/forked/golang/expansion):
    defined references are replaced, undefined ones stay literal, $$ escapes a $."""
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "$" and i + 1 < len(value):
            nxt = value[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = value.find(")", i + 2)
                if end != -1:
                    name = value[i + 2 : end]
                    out.append(env[name] if name in env else value[i : end + 1])
                    i = end + 1
                    continue
        out.append(value[i])
        i += 1
    return "".join(out)


class ConfigError(Exception):
    """CreateContainerConfigError: the container's configuration references something that does not exist."""


def _field_ref(pod: Obj, path: str) -> str:
    meta = pod["metadata"]
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": pod["spec"].get("nodeName"),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName"),
        "status.hostIP": "127.0.0.1",
        "status.podIP": "127.0.0.1",
    }
    if path not in simple:
        raise ConfigError(f'unsupported fieldRef "{path}"')
    return str(simple[path] or "")


def _resource_ref(container: Obj, ref: dict[str, Any]) -> str:
    section, _, name = str(ref.get("resource", "")).partition(".")
    res = container.get("resources") or {}
    raw = (res.get(section) or {}).get(name)
    divisor = parse_quantity(ref.get("divisor", "1"))
    if raw is None:
        # Unset limits fall back to node allocatable; report something large and stable.
        return str(os.cpu_count() or 1) if name == "cpu" else str(64 * 2**30)
    value = parse_quantity(raw) / divisor
    return str(int(value.to_integral_value(rounding="ROUND_CEILING")))


def container_env(pod: Obj, container: Obj, base: dict[str, str], store: Store | None = None) -> dict[str, str]:
    """Compose a container's environment in declaration order, as the kubelet does; raise ConfigError.
    Secrets and ConfigMaps are read from ``store``: the emulator's, or a real API server's through
    kannon.testing.node's ApiStore."""
    try:
        return _container_env(pod, container, base, store)
    except secrets.SecretMissing as exc:
        raise ConfigError(str(exc)) from exc


_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")  # keys that are no valid variable name are skipped


def _config_map(store: Store | None, ns: str, ref: dict[str, Any]) -> dict[str, str] | None:
    """A ConfigMap's ``data`` (env sources take no ``binaryData``), None when the store has no such ConfigMap."""
    obj = store.get("configmaps", ns, str(ref.get("name") or "")) if store is not None else None
    return None if obj is None else dict(obj.get("data") or {})


def _container_env(pod: Obj, container: Obj, base: dict[str, str], store: Store | None) -> dict[str, str]:
    env = dict(base)
    env["HOSTNAME"] = pod["metadata"]["name"]
    ns = pod["metadata"].get("namespace", "")
    for src in container.get("envFrom") or []:
        if src.get("secretRef") and store is not None:
            env.update(secrets.env_from(store, ns, src["secretRef"], str(src.get("prefix") or "")))
            continue
        data = _config_map(store, ns, src["configMapRef"]) if src.get("configMapRef") else None
        if data is not None:
            prefix = str(src.get("prefix") or "")
            env.update({prefix + k: v for k, v in data.items() if _ENV_NAME.fullmatch(prefix + k)})
            continue
        ref = src.get("configMapRef") or src.get("secretRef")
        kind = "configmap" if src.get("configMapRef") else "secret"
        if ref and not ref.get("optional"):
            raise ConfigError(f'{kind} "{ref.get("name")}" not found')
    for item in container.get("env") or []:
        name = item["name"]
        if item.get("valueFrom"):
            vf = item["valueFrom"]
            if vf.get("fieldRef"):
                env[name] = _field_ref(pod, vf["fieldRef"]["fieldPath"])
            elif vf.get("resourceFieldRef"):
                env[name] = _resource_ref(container, vf["resourceFieldRef"])
            elif vf.get("secretKeyRef") and store is not None:
                value = secrets.key_ref(store, ns, vf["secretKeyRef"])
                if value is not None:
                    env[name] = value
            elif vf.get("configMapKeyRef") and (data := _config_map(store, ns, vf["configMapKeyRef"])) is not None:
                ref = vf["configMapKeyRef"]
                if ref.get("key") in data:
                    env[name] = data[ref["key"]]
                elif not ref.get("optional"):
                    raise ConfigError(f"couldn't find key {ref.get('key')} in ConfigMap {ns}/{ref.get('name')}")
            else:
                ref = vf.get("secretKeyRef") or vf.get("configMapKeyRef") or {}
                kind = "secret" if vf.get("secretKeyRef") else "configmap"
                if not ref.get("optional"):
                    raise ConfigError(f'{kind} "{ref.get("name")}" not found')
        else:
            env[name] = expand(str(item.get("value") or ""), env)
    return env
