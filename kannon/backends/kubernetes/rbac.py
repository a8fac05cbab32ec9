"""The permissions the backend needs, rendered as a Role and RoleBinding for ``kannon k8s rbac``."""

from __future__ import annotations

#: every (api group, resource, verbs) the backend calls; `kannon k8s rbac` renders exactly this
RBAC_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("batch", "jobs", ("create", "get", "list", "watch", "delete")),
    ("", "pods", ("get", "list", "watch")),  # get: the master's own pod (template, ownerReference)
    ("", "pods/log", ("get",)),
    # the run lease (one master per run): read, take, renew, release
    ("coordination.k8s.io", "leases", ("get", "create", "update", "delete")),
    # the run's Secret (.secret): create, replace on re-attach, sweep another name of the run, delete at the end
    ("", "secrets", ("create", "update", "list", "delete")),
    # the run's code ConfigMap with --ship-code --k8s-code-via configmap (.codemap): create, sweep, delete
    ("", "configmaps", ("create", "list", "delete")),
)

#: calls that only add detail and degrade gracefully when refused (403): listed in the output as optional
OPTIONAL_RBAC_RULES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("kueue.x-k8s.io", "workloads", ("list",), "why a Job waits in a Kueue queue (the Workload's condition message)"),
    ("", "events", ("list",), "at pending_timeout: the ResourceQuota message of a Job whose pods were refused, and "
     "whether a pod is still pulling its image or waiting for a scale-up (then it may take up to start_timeout)"),
)

def render_rbac(namespace: str, service_account: str, name: str = "kannon") -> str:
    """The minimal Role + RoleBinding (YAML) for a master running as ``service_account`` in ``namespace``."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": [{"apiGroups": [group], "resources": [res], "verbs": list(verbs)} for group, res, verbs in RBAC_RULES],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
    }
    header = (f"# kannon: what the Kubernetes backend calls in namespace {namespace!r}\n"
              f"# apply with: kannon k8s rbac --namespace {namespace} --service-account {service_account} "
              "| kubectl apply -f -\n")  # fmt: skip
    for group, res, verbs, why in OPTIONAL_RBAC_RULES:  # comments: not granted unless the user adds them
        header += (f"# optional: {{apiGroups: [{group!r}], resources: [{res}], verbs: [{', '.join(verbs)}]}}  "
                   f"# {why}\n")
    import yaml

    return header + yaml.safe_dump_all([role, binding], sort_keys=False)

