"""Hand-off specs: encoded once per task (retries reuse files), written where the executor's children can read."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kannon import handoff, speccrypt, storage
from kannon.backends.base import Executor
from kannon.plan import Node
from kannon.ship import Shipment

WRITTEN = "specs.written"  # in the run directory: every spec location this run wrote, one per line


@dataclass(frozen=True, slots=True)
class Spec:
    location: str
    sha256: str
    env: dict[str, str] = field(default_factory=dict)  # KANNON_SPEC for inline specs


class Specs:
    """Encoded on the loop thread; uploads to S3/GCS (may be slow) run on the I/O pool, so lookups are locked.

    Every spec is sealed with the run's key (kannon.speccrypt) whatever its transport; ``sha256`` is the
    plaintext's, so it names the task's content and stays the same when a re-attaching master seals it again."""

    def __init__(self, executor: Executor, run_id: str, run_dir: Path, sys_path: Sequence[str],
                 shipment: Shipment | None = None, key: str | None = None, task_classes: Sequence[type] = (),
                 config_sections: Sequence[str] = (),
                 config: Mapping[str, Mapping[str, str]] | None = None) -> None:  # fmt: skip
        self.executor, self.run_id, self.run_dir, self.sys_path = executor, run_id, run_dir, tuple(sys_path)
        self.key = key if key is not None else speccrypt.run_key(run_dir)
        self.code = shipment.spec_entry() if shipment is not None else None
        self.code_root = str(shipment.code_root) if shipment is not None else None
        if config is None:
            config = handoff.config_for_child(handoff.luigi_config_snapshot(), task_classes, config_sections)
        self.config = {section: dict(options) for section, options in config.items()}
        self._covered = set(task_classes)  # classes whose config sections self.config holds
        self.encoder = handoff.Encoder(verify_values=False)  # values were verified while planning
        self._done: dict[str, Spec] = {}
        self._lock = threading.Lock()

    def take(self, task_id: str) -> Spec | None:
        """The spec to launch ``task_id`` with. An inline spec's text is not kept past its launch: at 10,000 tasks
        that was 7 MB held to the end of the run, for retries, which encode it again (same content, same hash)."""
        with self._lock:
            spec = self._done.get(task_id)
            if spec is not None and spec.env:
                del self._done[task_id]
            return spec

    def encode(self, node: Node) -> tuple[Spec, bytes | None]:
        """Encode ``node``'s spec (loop thread). Inline and local specs are done here and cached; for a spec that
        goes to object storage, the bytes to upload with :meth:`upload` (I/O pool) are returned too."""
        with self._lock:
            cached = self._done.get(node.task_id)
        if cached is not None:
            return cached, None
        if type(node.task) not in self._covered:  # planned during the run (a yield in run()): add its sections
            self._covered.add(type(node.task))
            extra = handoff.config_for_child(handoff.luigi_config_snapshot(), [type(node.task)])
            for section, options in extra.items():
                self.config.setdefault(section, dict(options))
        data = self.encoder.spec(node.task, self.run_id, self.config, self.sys_path, code=self.code,
                                 code_root=self.code_root)  # fmt: skip
        self.encoder.release(node.task_id)  # a retry encodes it again, to the same bytes
        sha = hashlib.sha256(data).hexdigest()
        data = speccrypt.seal(data, self.key)
        transport = self.executor.spec_transport(len(data))
        if transport == "inline":
            spec = Spec("env:KANNON_SPEC", sha, {"KANNON_SPEC": storage.encode_inline(data)})
        elif transport == "workspace":
            base = str(getattr(node.task, "workspace_directory", "./resources/"))
            spec = Spec(storage.join(base, "kannon", "specs", self.run_id, f"{node.task_id}.json"), sha)
        else:
            spec = Spec(str(self.run_dir / "specs" / f"{node.task_id}.json"), sha)
        if not spec.env:
            self._record(spec.location)
        if storage.is_remote(spec.location):
            return spec, data
        if not spec.env:
            storage.write_bytes(spec.location, data)
        self._remember(node.task_id, spec)
        return spec, None

    def upload(self, task_id: str, spec: Spec, data: bytes) -> None:
        storage.write_bytes(spec.location, data)
        self._remember(task_id, spec)

    def _remember(self, task_id: str, spec: Spec) -> None:
        with self._lock:
            self._done[task_id] = spec

    # -- cleanup: every spec file this run wrote is deleted when it ends, or by the next run after a crash -------
    @property
    def _written(self) -> Path:
        return self.run_dir / WRITTEN

    def _record(self, location: str) -> None:
        """Listed before it is written, so a master killed half-way still leaves the next run a complete list."""
        with self._lock:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self._written, "a", encoding="utf-8") as f:
                f.write(location + "\n")

    def sweep(self) -> int:
        """Delete the spec files a previous (crashed) master of this run left (only the lease holder may)."""
        return self.cleanup()

    def cleanup(self) -> int:
        """Delete every spec file listed (and any file in the local spec directory); returns how many."""
        with self._lock:
            try:
                listed = self._written.read_text(encoding="utf-8").splitlines()
            except FileNotFoundError:
                listed = []
            local = self.run_dir / "specs"
            here = [str(p) for p in local.iterdir() if p.is_file()] if local.is_dir() else []
            gone = list(dict.fromkeys(loc for loc in [*listed, *here] if loc))
            for location in gone:
                storage.delete(location)  # best effort: object storage may be unreachable at the end
            self._written.unlink(missing_ok=True)
            self._done.clear()
            return len(gone)
