"""Code shipping, child side: fetch the master's code archive, verify it, extract it once per node, import from it.

Runs before anything of the user's is imported, so it imports only the standard library and kannon.storage. The
archive's sha256 comes from the hand-off spec, whose own sha256 the child has already checked: a verified spec
therefore pins the exact code. Extractions are cached by that hash (``$KANNON_CODE_CACHE``, else
``${XDG_CACHE_HOME:-~/.cache}/kannon/code``, else a per-user directory under the system temp dir); an extraction is
complete only once its directory has been renamed into place with a marker inside, so a later task on the same node
reuses it without fetching, and concurrent children extracting the same hash never see each other's half-written
files (the loser of the rename discards its copy and uses the winner's).

See docs/code-shipping.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import re
import shutil
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

ARCHIVE_SUFFIX = ".tar.gz"
MARKER = ".kannon-complete"  # written inside the temporary directory before the rename that publishes it
# Where a Kubernetes child pod sees the run's code ConfigMap (kannon/backends/kubernetes/codemap.py mounts it there).
CONFIG_MAP_DIR = "/var/run/kannon/code"
SPEC_KEY = "code"  # the hand-off spec's field: {"location": ..., "sha256": ..., "files": n, "size": n}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ShipError(Exception):
    """Code cannot be shipped (master) or the shipped code cannot be used (child); the message says why and the fix.

    The child maps it to exitcodes.BAD_SPEC, like a spec that fails its own hash check."""


def code_ref(doc: Mapping[str, Any]) -> tuple[str, str] | None:
    """The (location, sha256) of a parsed spec's shipped code, or None when the run does not ship code."""
    ref = doc.get(SPEC_KEY)
    if ref is None:
        return None
    if not isinstance(ref, Mapping) or not all(isinstance(ref.get(k), str) for k in ("location", "sha256")):
        raise ShipError(f"the spec's {SPEC_KEY!r} field must be an object with string 'location' and 'sha256'")
    return ref["location"], ref["sha256"]


def default_cache_dir() -> Path:
    explicit = os.environ.get("KANNON_CODE_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "kannon", "code")


def _usable_cache_dir(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        return cache_dir
    candidate = default_cache_dir()
    try:
        candidate.mkdir(parents=True, exist_ok=True)
        if os.access(candidate, os.W_OK | os.X_OK):
            return candidate
        if os.environ.get("KANNON_CODE_CACHE"):  # a node cache mounted for us, but not ours to write: say so
            print(f"kannon: the code cache {candidate} (KANNON_CODE_CACHE) is not writable by uid {os.getuid()}; "
                  "extracting into a private directory instead (later tasks on this node extract again)",
                  file=sys.stderr)  # fmt: skip
    except OSError:
        pass  # containers often run as a user whose HOME (often "/") is not writable
    fallback = Path(tempfile.gettempdir(), f"kannon-code-{os.getuid()}")
    fallback.mkdir(mode=0o700, parents=True, exist_ok=True)
    return fallback


def fetch_and_activate(location: str, sha256: str, cache_dir: Path | None = None) -> Path:
    """Make the archive at ``location`` importable: its extraction goes first on ``sys.path``; returns that directory.

    Raises ShipError for a missing, unreadable, altered or malformed archive, before anything in it is imported.
    """
    sha = sha256.lower()
    if not _SHA256.match(sha):
        raise ShipError(f"{sha256!r} is not a sha256 hex digest")
    try:
        root = _usable_cache_dir(cache_dir)
    except OSError as e:
        raise ShipError(f"cannot create the code cache: {e}. Set KANNON_CODE_CACHE to a writable directory") from e
    final = root / sha
    if not _complete(final, sha):
        _extract_into_cache(_fetch(location, sha), root, final, sha)
    entry = str(final)
    if entry in sys.path:
        sys.path.remove(entry)
    sys.path.insert(0, entry)
    importlib.invalidate_caches()  # path finders cache directory listings
    return final


def stale_modules(extract_dir: Path) -> list[str]:
    """Modules already in ``sys.modules`` that the archive provides but that were not imported from ``extract_dir``.

    Non-empty before the user's imports: this process (a warm pod, a fork server's child) already holds other code
    under those names, which importing would silently reuse; it must start cold. Non-empty after them: something
    earlier on ``sys.path`` shadowed the archive.
    """
    base = os.path.realpath(extract_dir)
    stale = []
    for name in sorted(provided_modules(extract_dir)):
        module = sys.modules.get(name)
        if module is None:
            continue
        paths = [getattr(module, "__file__", None) or "", *list(getattr(module, "__path__", None) or [])]
        inside = [p for p in paths if p and os.path.realpath(p).startswith(base + os.sep)]
        if not inside:
            stale.append(name)
    return stale


COLD_ENV = "KANNON_SHIP_COLD"  # set in a process that restart_cold() started, so a second restart is refused


def restart_cold(args: Sequence[str]) -> NoReturn:
    """Replace this (warm) process with a fresh interpreter running ``python *args``: same pid, same output pipes,
    nothing imported. Raises ShipError if this process is already such a restart (stale modules again would mean
    ``sitecustomize``/``.pth`` imports the project: a restart cannot help)."""
    if os.environ.get(COLD_ENV):
        raise ShipError("the shipped modules were already imported at interpreter start-up (a sitecustomize or .pth "
                        "file importing the project?); refusing to run code that may be stale")  # fmt: skip
    sys.stdout.flush()
    sys.stderr.flush()
    os.environ[COLD_ENV] = "1"
    os.execv(sys.executable, [sys.executable, *args])  # noqa: S606 - an argv list, no shell involved


def provided_modules(extract_dir: Path) -> set[str]:
    """Dotted names of the modules and packages (regular or namespace) the extracted archive contains."""
    names: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(extract_dir):
        dirnames[:] = [d for d in dirnames if d.isidentifier() and d != "__pycache__"]  # importable names only
        rel = Path(dirpath).relative_to(extract_dir).parts
        has_py = False
        for f in filenames:
            stem, dot, ext = f.rpartition(".")
            if dot and ext == "py" and stem.isidentifier():
                has_py = True
                names.add(".".join(rel) if stem == "__init__" else ".".join((*rel, stem)))
        if rel and has_py:
            for i in range(1, len(rel) + 1):  # every enclosing package, namespace ones included
                names.add(".".join(rel[:i]))
    names.discard("")
    return names


# -- internals ---------------------------------------------------------------------------------------------------
def _complete(final: Path, sha: str) -> bool:
    try:
        return (final / MARKER).read_text(encoding="ascii").strip() == sha
    except OSError:
        return False


def _in_config_map(location: str) -> bool:
    # The archive came in the run's ConfigMap, not through the workspace: the fix differs (nothing to re-upload).
    return location.startswith(CONFIG_MAP_DIR + "/")


def _fetch(location: str, sha: str) -> bytes:
    from kannon import storage

    try:
        data = storage.read_bytes(location)
    except FileNotFoundError as e:
        if _in_config_map(location):
            raise ShipError(f"the code archive {location} is not in this container: the run's code ConfigMap "
                            f"(--k8s-code-via configmap) is not mounted at {CONFIG_MAP_DIR}, or holds other code; "
                            "rerun the build so the master creates and mounts it again") from e  # fmt: skip
        raise ShipError(f"the code archive {location} does not exist (deleted after the master uploaded it?); "
                        "rerun the build so the master uploads it again") from e  # fmt: skip
    except Exception as e:
        raise ShipError(f"cannot read the code archive {location}: {type(e).__name__}: {e}") from e
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha:
        redo = ("the master created the run's code ConfigMap; refusing to import from it. Delete that ConfigMap "
                "(kubectl get configmaps -l kannon.io/run-id=...) and rerun the build" if _in_config_map(location)
                else "the master uploaded it; refusing to import from it. Delete it and rerun the build (the master "
                "uploads it again)")  # fmt: skip
        raise ShipError(f"the code archive {location} has sha256 {actual}, not {sha}: it was altered or replaced "
                        f"after {redo}")  # fmt: skip
    return data


def _extract_into_cache(data: bytes, root: Path, final: Path, sha: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{sha[:12]}-", dir=root))
    try:
        safe_extract(data, tmp)
        (tmp / MARKER).write_text(sha + "\n", encoding="ascii")
        tmp.chmod(0o755)  # mkdtemp makes it 0o700; other users of a shared node cache may read it
        try:
            os.rename(tmp, final)
            return
        except OSError:
            if _complete(final, sha):  # another child on this node won the race: use its extraction
                return
        # A directory without a marker (a crashed, older kannon?): move it aside atomically, then publish ours.
        aside = Path(tempfile.mkdtemp(prefix=f".old-{sha[:12]}-", dir=root))
        with contextlib.suppress(OSError):
            os.rename(final, aside / "x")
        shutil.rmtree(aside, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not _complete(final, sha):
                raise ShipError(f"cannot publish the code extraction {final}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def safe_extract(data: bytes, dest: Path) -> None:
    """Extract a kannon code archive: regular files only, relative paths only, nothing outside ``dest``."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                target = _member_path(member, dest)
                source = tar.extractfile(member)
                assert source is not None  # a regular file
                content = source.read()
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with open(target, "xb") as out:  # "x": a duplicate entry is refused, not overwritten
                        out.write(content)
                    target.chmod(0o755 if member.mode & 0o100 else 0o644)
                except FileExistsError as e:
                    raise ShipError(f"the code archive lists {member.name!r} twice; refusing it") from e
                except OSError as e:  # disk full, read-only cache: the node's problem, not the archive's
                    raise ShipError(f"cannot extract the code archive into {dest}: {e}. Set KANNON_CODE_CACHE to a "
                                    "writable directory with space") from e  # fmt: skip
    except ShipError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as e:  # gzip's errors are OSError/EOFError
        raise ShipError(f"the code archive is not a valid kannon archive: {type(e).__name__}: {e}") from e


def _member_path(member: tarfile.TarInfo, dest: Path) -> Path:
    name = member.name
    if not member.isreg():
        raise ShipError(f"the code archive contains {name!r}, which is not a regular file (links and devices are "
                        "never shipped); refusing it")  # fmt: skip
    parts = name.split("/")  # the raw name: kannon's archives have no ".", ".." or empty components at all
    if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
        raise ShipError(f"the code archive contains the unsafe path {name!r}; refusing it")
    return dest.joinpath(*parts)
