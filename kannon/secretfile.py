"""The run's secrets as a file, for backends that must not put them in a container's config (Docker).

The backend writes ``{"NAME": "value", ...}`` (``RunInfo.secrets`` minus the names ``Launch.env`` sets, so a
``Hints.env`` name still wins) to a file only the container's user can read, mounts it read-only at
:data:`CONTAINER_PATH` and passes only that path in :data:`ENV_VAR`. The child calls :func:`load` first thing: the
values become ordinary environment variables of the child process (and of anything it starts), and the pointer goes.
"""

from __future__ import annotations

import contextlib
import json
import os

ENV_VAR = "KANNON_SECRETS_FILE"
CONTAINER_PATH = "/run/kannon/secrets.json"


class SecretFileError(Exception):
    """The file named by :data:`ENV_VAR` cannot be read or is not a JSON object of strings."""


def load() -> None:
    """Move the secrets file's values into ``os.environ`` (they override the container's own environment, which
    holds only layers below them), then drop :data:`ENV_VAR`. Nothing to do when it is not set."""
    path = os.environ.pop(ENV_VAR, None)
    if not path:
        return
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        # Never the content: a partial read of a secret must not reach a log.
        raise SecretFileError(f"cannot read the secrets file {path} ({type(e).__name__}); is it mounted into the "
                              "container and readable by the container's user?") from None  # fmt: skip
    if not isinstance(doc, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in doc.items()):
        raise SecretFileError(f"the secrets file {path} is not a JSON object of strings")
    os.environ.update(doc)


def write(path: str, values: dict[str, str], uid: int | None = None) -> None:
    """Write ``values`` to ``path`` with mode 0600 (replacing a leftover), owned by ``uid`` when given.

    Created 0600 from the start (``O_EXCL`` after removing a leftover), so no moment exists where it is readable
    by others; the chown comes before any value is written.
    """
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        if uid is not None:
            os.fchown(fd, uid, -1)
        json.dump(values, f)
