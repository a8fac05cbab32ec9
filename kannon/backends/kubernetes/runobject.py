"""A namespaced object one run owns — its Secret (secret.py), its code ConfigMap (codemap.py).

Each follows one lifecycle: :meth:`RunObject.put` once in the executor's ``start()`` (a re-attaching master of the
same run finds it there: the Secret is replaced with this master's values, immutable code is left as it is),
:meth:`~RunObject.sweep` of the run's copies under another name (an earlier master's, with another job prefix or
older code), :meth:`~RunObject.delete` in ``close()``. A 403 becomes the ApiCaller's BackendError naming the verb and
``kannon k8s rbac``; a body is never echoed in a message (the Secret's holds the values).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from kannon.backends.base import BackendError
from kannon.backends.kubernetes.names import LABEL_RUN, label_value

if TYPE_CHECKING:
    from kannon.backends.kubernetes.api import ApiCaller

log = logging.getLogger("kannon.kubernetes")


class RunObject:
    resource: ClassVar[str]  # the API resource ("secrets"), as RBAC names it
    kind: ClassVar[str]  # the CoreV1Api method suffix ("secret" -> create_namespaced_secret)
    title: ClassVar[str]  # for messages: "Secret", "code ConfigMap"
    selector: ClassVar[str] = ""  # more label-selector terms that pick this run's objects of this use
    replace_existing: ClassVar[bool] = False  # put() over an existing one replaces it (else keeps it)

    def __init__(self, api: ApiCaller, core: Any, namespace: str, name: str) -> None:
        self.api, self.core, self.namespace, self.name = api, core, namespace, name
        self.created = False  # the run's (created now, or by an earlier master of the run): deleted at close()

    def _method(self, verb: str) -> Any:
        return getattr(self.core, f"{verb}_namespaced_{self.kind}")

    def put(self, body: dict[str, Any]) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.api.call("create", self.resource, self._method("create"), self.namespace, body)
        except ApiException as e:
            if e.status != 409:
                raise BackendError(f"cannot create the run's {self.title} {self.name!r} in namespace "
                                   f"{self.namespace!r} (HTTP {e.status} {e.reason})") from None  # fmt: skip
            if self.replace_existing:
                try:
                    self.api.call("update", self.resource, self._method("replace"), self.name, self.namespace, body)
                except ApiException as e2:
                    raise BackendError(f"cannot replace the run's {self.title} {self.name!r} in namespace "
                                       f"{self.namespace!r} (HTTP {e2.status} {e2.reason})") from None  # fmt: skip
        self.created = True

    def sweep(self, run_id: str) -> None:
        """Delete the run's objects of this use under another name; best effort."""
        selector = ",".join(filter(None, (f"{LABEL_RUN}={label_value(run_id)}", self.selector)))
        try:
            found = self.api.call("list", self.resource, self._method("list"), self.namespace,
                                  label_selector=selector)  # fmt: skip
        except Exception as e:
            log.warning("could not list the %ss left by an earlier master of run %s: %s", self.title, run_id, e)
            return
        for item in found.items or ():
            if item.metadata.name != self.name:
                self._delete(item.metadata.name)

    def delete(self) -> None:
        if self.created:
            self._delete(self.name)
            self.created = False

    def _delete(self, name: str) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.api.call("delete", self.resource, self._method("delete"), name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                log.warning("could not delete the run's %s %s: HTTP %s %s", self.title, name, e.status, e.reason)
        except BackendError as e:
            log.warning("could not delete the run's %s %s: %s", self.title, name, e)
