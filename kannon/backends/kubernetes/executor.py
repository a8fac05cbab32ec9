"""The Kubernetes executor: construction, start/close, launch (creation off the caller's thread), cancel.

* ``start`` lists the run's Jobs and pods once (label ``kannon.io/run-id``), which gives both the resourceVersion to
  watch from and the leftovers of an earlier master of the same run: running Jobs are adopted when their task is
  launched again, finished ones are deleted. Then one Job watch and one pod watch follow the run.
* ``launch`` registers the attempt and returns; a pool creates the Job with a deterministic name from (prefix, run,
  task, attempt): a retried or repeated create hits 409 and adopts the existing Job instead of making a duplicate.
* Watch events drive everything else (:mod:`.tracker`).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kannon import exitcodes
from kannon.backends.base import BackendError, Launch, Report, RunInfo, SpecTransport
from kannon.backends.kubernetes import admission, codemap, ownership, raw
from kannon.backends.kubernetes import classify as kc
from kannon.backends.kubernetes.api import ApiCaller, api_status, default_namespace, make_client
from kannon.backends.kubernetes.attempt import Phase
from kannon.backends.kubernetes.create import JobCreator
from kannon.backends.kubernetes.lease import RunLease, holder_identity, lease_name
from kannon.backends.kubernetes.logs import JobLogs
from kannon.backends.kubernetes.manifest import (
    SCALED_RESOURCES,
    build_job,
    cpu_quantity,
    job_error_problems,
    load_template,
    memory_quantity,
    owner_reference,
    spec_changes,
    template_container,
    template_from_pod,
)
from kannon.backends.kubernetes.names import job_name, run_selector
from kannon.backends.kubernetes.pending import PendingDeadlines, deadlines
from kannon.backends.kubernetes.secret import RunSecret, secret_body, secret_name
from kannon.backends.kubernetes.watch import Watcher, shutdown_response
from kannon.hints import Hints, parse_cpu, parse_memory
from kannon.pack.protocol import LABEL_PACK

if TYPE_CHECKING:
    from kannon.ship import Archive
    from kubernetes.client import ApiClient

log = logging.getLogger("kannon.kubernetes")
PACK_DEFAULT = 8  # bullets per pod at most, when they are ready together and small (pack_limit)
PACK_CPU = 1.0  # cores a pack's pod may request in all (its members' summed); more runs as separate pods
PACK_MEMORY = 2 * 2**30  # bytes, likewise
_FOLLOW_ALL_BELOW_TTL = 10  # seconds of ttl_seconds_after_finished under which every pod's log is followed at once

class K8sJobExecutor(JobCreator, PendingDeadlines):
    """Run each bullet attempt as a Kubernetes Job (see docs/kubernetes.md).

    ``template_job``: a ``V1Job``, a dict in API form, or a YAML file path; in a cluster it may be omitted, and the
    master's own pod is copied. ``owner``: ``"auto"`` (in a cluster: the master's Job, else its pod), ``None``, or an
    ownerReference mapping. ``pending_timeout``: seconds an attempt may wait to start before it fails (for a Job
    held by an admission queue, counted from its admission). ``start_timeout``: seconds a start that is slow but
    progressing (an image pull, a cluster scale-up) may wait in all (:mod:`.pending`). ``queue_name``: a Kueue
    LocalQueue (default: the template's ``kueue.x-k8s.io/queue-name`` label); ``max_submitted``: with a queue, how
    many Jobs may exist at once, queued ones included (default: twice ``max_parallel``, which caps the admitted).
    ``log_follow_after``: seconds a pod runs before its log is streamed live (0: from its start); the log of a pod
    that ends sooner is read once at its end, and its lines reach the run then. ``pack``: up to this many bullets
    that are ready together, with the same hints and a declared size (cpu and memory, from the hints or the
    template), share one Job's pod, side by side (kannon.pack; their resources summed, at most ``PACK_CPU`` cores
    and ``PACK_MEMORY`` in all; never GPU bullets); 1: a pod per bullet.
    """

    name = "kubernetes"
    delivers_secrets = True  # RunInfo.secrets: one Secret per run, secretKeyRef
    default_parallelism = 32

    def __init__(
        self,
        template_job: Any = None,
        namespace: str | None = None,
        api_client: ApiClient | None = None,
        job_prefix: str = "kannon",
        *,
        python: str = "python",
        container: str | None = None,
        owner: Mapping[str, Any] | str | None = "auto",
        ttl_seconds_after_finished: int | None = 3600,
        pending_timeout: float = 300.0,
        start_timeout: float = 900.0,
        inline_spec_limit: int = 32 * 1024,
        gpu_resource: str = "nvidia.com/gpu",
        qps: float = 20.0,
        burst: int = 40,
        watch_timeout: int = 300,
        log_lines: int = 10000,
        log_follow_after: float = 1.0,
        in_cluster: bool | None = None,
        master_pod_name: str | None = None,
        cleanup_leftovers: bool = True,
        retry_backoff: float = 0.2,
        lease_duration: float = 30.0,
        ship_code: bool = False,
        code_via: str = "workspace",
        code_cache: str | None = None,
        queue_name: str | None = None,
        max_submitted: int | None = None,
        pack: int = PACK_DEFAULT,
    ) -> None:
        super().__init__()
        if not (isinstance(pack, int) and pack >= 1):
            raise BackendError(f"pack must be a whole number of bullets per pod >= 1, not {pack!r} (--k8s-pack)")
        self.pack_size = pack  # bullets one pod may run side by side (kannon.pack; 1: one pod per bullet)
        self.ship_code = ship_code  # Kannon.build uploads the code archive; the child fetches it (code-shipping.md)
        if code_via not in codemap.CODE_VIA:
            raise BackendError(f"code_via must be one of {', '.join(codemap.CODE_VIA)}, not {code_via!r}")
        self.code_via = code_via  # "configmap": shipped code travels in the run's ConfigMap (.codemap), see carry_code
        self._code: Archive | None = None  # the archive carry_code() took: its ConfigMap is created in start()
        self._code_map: codemap.RunCode | None = None
        if code_cache is not None and not code_cache.startswith("/"):
            raise BackendError(f"code_cache must be an absolute path on the nodes (a hostPath), not {code_cache!r}")
        self.code_cache = code_cache  # a node path: the children's shared extraction cache (codemap.mount_cache)
        self._shipping = False  # carry_code() was called: this run ships code
        self._init_tracking()
        self.python = python
        self.job_prefix = job_prefix
        self.container = container
        self.owner_setting = owner
        self.ttl = ttl_seconds_after_finished
        if not (isinstance(log_follow_after, (int, float)) and log_follow_after >= 0):  # NaN too
            raise BackendError(f"log_follow_after must be a number of seconds >= 0, not {log_follow_after!r} "
                               "(--k8s-log-follow-after)")  # fmt: skip
        # a Job deleted within seconds of its end may take its pod's log along before a read at the end: follow all
        self.follow_after = float(log_follow_after) if self.ttl is None or self.ttl >= _FOLLOW_ALL_BELOW_TTL else 0.0
        self.pending_timeout, self.start_timeout = deadlines(pending_timeout, start_timeout)
        if not (isinstance(qps, (int, float)) and qps > 0):  # NaN too: a rate limit that never admits is a hang
            raise BackendError(f"qps must be a positive number of requests per second, not {qps!r} (--k8s-qps)")
        self.inline_spec_limit = int(inline_spec_limit)
        self.gpu_resource = gpu_resource
        self.watch_timeout = int(watch_timeout)
        self.cleanup_leftovers = cleanup_leftovers
        self.lease_duration = float(lease_duration)
        self.master_pod_name = master_pod_name or os.environ.get("POD_NAME") or os.environ.get("HOSTNAME")
        self.template: dict[str, Any] | None = None if template_job is None else load_template(template_job)
        if self.template is not None:  # refuse a template that cannot work before anything is planned or launched
            target = template_container(self.template["spec"]["template"]["spec"], container, python)
            # The task's container is found by name from here on: a pod's container statuses are sorted by name,
            # so with a sidecar the first status may well be the sidecar's.
            self.container = container or target.get("name")
        # Kueue LocalQueue (label kueue.x-k8s.io/queue-name; default: the template's): Jobs wait suspended in it
        self.queue_name = queue_name or admission.template_queue(self.template)
        self.max_submitted = max_submitted
        self.api_client, self.in_cluster = make_client(api_client, in_cluster)
        self.namespace = namespace or default_namespace(self.template, self.in_cluster)
        if self.template is None and not self.in_cluster:
            raise BackendError(
                "the Kubernetes backend needs a Job template outside a cluster: pass template_job= (a V1Job, a dict "
                "or a YAML file path; CLI: --job-template FILE). Inside a cluster kannon copies the master's own pod."
            )
        self.api = ApiCaller(self.namespace, qps=qps, burst=burst, backoff=retry_backoff)
        self.logs = JobLogs(self.api, self.namespace, self.container, int(log_lines), self.emit, self._state)
        self.owner: dict[str, Any] | None = dict(owner) if isinstance(owner, Mapping) else None
        self._creator: concurrent.futures.ThreadPoolExecutor | None = None
        self._ticker: threading.Thread | None = None
        self._secret: RunSecret | None = None  # the run's Secret (run.secrets), see .secret

    # -- lifecycle ------------------------------------------------------------------------------------------
    def acquire_lease(self, run: RunInfo, wait: float | None) -> None:
        """Hold the run's ``coordination.k8s.io/v1`` Lease (:mod:`.lease`) until :meth:`release_lease`."""
        if self._run_lease is not None:
            return
        identity = holder_identity(getattr(run, "invocation_id", ""))
        lease = RunLease(self.api, self.api_client, self.namespace, lease_name(run.run_id), identity,
                         self.lease_duration)  # fmt: skip
        lease.acquire(wait)
        self._run_lease = lease

    def release_lease(self) -> None:
        lease, self._run_lease = self._run_lease, None
        if lease is not None:
            lease.release()

    def start(self, run: RunInfo, report: Report) -> None:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        super().start(run, report)
        self._batch = client.BatchV1Api(self.api_client)
        self._core = self.logs.core = client.CoreV1Api(self.api_client)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="kannon-k8s")
        # creates have their own workers: a create retrying through 429s must not hold up finishing attempts
        self._creator = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="kannon-k8s-create")
        if self.in_cluster and (self.template is None or self.owner_setting == "auto"):
            pod = ownership.read_master_pod(self.api, self._core, self.namespace, self.master_pod_name,
                                            self.template is not None)  # fmt: skip
            if pod is not None and self.template is None:
                self.template = template_from_pod(pod, self.api_client, self.container)
                copied = self.template["spec"]["template"]["spec"]["containers"][0]
                self.container = self.logs.container = copied["name"]
            if pod is not None and self.owner_setting == "auto":
                self.owner = owner_reference(pod)
        if isinstance(self.owner_setting, Mapping) and self.owner is not None:
            ownership.verify_owner(self.api, self._core, self._batch, self.namespace, self.owner)
        selector = run_selector(run.run_id)
        ns = self.namespace
        jobs: Watcher[raw.Job] = Watcher(
            "jobs", raw.Job,
            lambda: self.api.call("list", "jobs", raw.as_json(self._batch.list_namespaced_job), ns,
                                  label_selector=selector),
            lambda rv, t: self._open_watch("jobs", self._batch.list_namespaced_job, selector, rv, t),
            self._on_job, self._on_job_relist, self._on_fatal, self.watch_timeout,
        )  # fmt: skip
        pods: Watcher[raw.Pod] = Watcher(
            "pods", raw.Pod,
            lambda: self.api.call("list", "pods", raw.as_json(self._core.list_namespaced_pod), ns,
                                  label_selector=selector),
            lambda rv, t: self._open_watch("pods", self._core.list_namespaced_pod, selector, rv, t),
            self._on_pod, self._on_pod_relist, self._on_fatal, self.watch_timeout,
        )  # fmt: skip
        try:
            for pod in pods.list():
                self._remember_pod(pod)
            existing = jobs.list()
        except ApiException as e:
            if e.status != 404:
                raise
            raise BackendError(f"namespace {ns!r} does not exist ({api_status(e)[1] or e.reason}): create it, or "
                               "pass namespace= / --namespace") from e  # fmt: skip
        finished: list[str] = []
        packs: list[str] = []
        for job in existing:
            if kc.job_terminal(job) is not None and not self._yielded(job):
                finished.append(str(job.metadata.name))
            elif LABEL_PACK in (job.metadata.labels or {}):  # never adopted: its members are launched again
                packs.append(str(job.metadata.name))
            else:  # running, or stopped at a yield its master never read: adopted, so its request is read
                self._note_leftover(job)
        if run.secrets:  # before any Job: a Job naming a missing Secret would sit in CreateContainerConfigError
            self._secret = RunSecret(self.api, self._core, ns, secret_name(self.job_prefix, run.run_id))
            self._secret.put(secret_body(self._secret.name, ns, run.run_id, run.secrets, self.owner))
            if self.cleanup_leftovers:
                self._secret.sweep(run.run_id)
        if self._code is not None:  # before any Job, as the Secret: a pod naming a missing ConfigMap never starts
            self._code_map = codemap.RunCode(self.api, self._core, ns,
                                             codemap.codemap_name(self.job_prefix, run.run_id, self._code.sha256))
            self._code_map.put(codemap.codemap_body(self._code_map.name, ns, run.run_id, self._code, self.owner))
            if self.cleanup_leftovers:
                self._code_map.sweep(run.run_id)
        self._watchers = [jobs, pods]
        for w in self._watchers:
            w.start()
        if packs:  # before any launch: a member of a running pack and its new attempt would write the same output
            log.info("deleting %d running pack Job(s) of an earlier master of run %s", len(packs), run.run_id)
            for name in packs:  # Foreground: gone means its pod is gone too, not merely the Job object
                why = self._delete_confirmed(name)
                if why is not None:
                    raise BackendError(f"the pack Job {name} of an earlier master of this run is still there ({why}); "
                                       "delete it (kubectl delete job) and build again")  # fmt: skip
        if finished and self.cleanup_leftovers:
            log.info("deleting %d finished Job(s) left by an earlier master of run %s", len(finished), run.run_id)
            for name in finished:
                self._pool.submit(self._delete_quietly, name)
        if self._leftovers:
            log.info("found %d running Job(s) of an earlier master of run %s: adopted when their tasks are launched",
                     len(self._leftovers), run.run_id)  # fmt: skip
        self._ticker = threading.Thread(target=self._tick, name="kannon-k8s-deadlines", daemon=True)
        self._ticker.start()

    def _yielded(self, job: Any) -> bool:
        """Did this finished Job's child stop at a yield (exit 10, its request in the termination message)?"""
        pods = self._pods_of(job.metadata.name, job.metadata.uid)
        status = kc.container_status(pods[-1], self.container) if pods else None
        terminated = status.state.terminated if status is not None and status.state is not None else None
        return terminated is not None and terminated.exit_code == exitcodes.REQUESTED

    def close(self) -> None:
        if self._stop.is_set():
            return
        if self._creator is not None:  # creates in flight land (or fail) before anything is cancelled
            self._creator.shutdown(wait=True)
        if self._run_lease is not None and not self._run_lease.held():
            log.warning("another master took over the run lease: its %d running Job(s) are left to it",
                        len(self.live_keys()))  # fmt: skip
        elif self._pool is not None and self.live_keys():
            # the core gives up on these (it cancels what it wants stopped first): a Job left running here would
            # never be cleaned, since ttlSecondsAfterFinished only counts once it finishes
            for key in self.cancel_all(timeout=30.0):
                log.warning("%s", self._left_running(key, "not confirmed gone 30 s after deleting it"))
        with self._state:
            ours = self._run_lease is None or self._run_lease.held()
            orphans = [j.metadata.name for j in self._leftovers.values()] if self.cleanup_leftovers and ours else []
            self._leftovers.clear()
        for name in orphans:  # running Jobs of an earlier master whose tasks this run never asked for
            self._delete_quietly(name)
        if self._secret is not None and ours:  # a master that took the run over still needs it
            self._secret.delete()
        if self._code_map is not None and ours:
            self._code_map.delete()
        self._code, self._code_map, self._shipping = None, None, False  # the next build says again what it ships
        self._stop.set()
        with self._pods_changed:
            self._pods_changed.notify_all()  # a finish step waiting for a pod's last state gives up
        for w in self._watchers:
            w.stop()
        with self._state:
            followers = [(a.follower, a.follow_resp) for a in self._by_key.values() if a.follower is not None]
            followers += [(t, None) for t in self._followers]
            self._followers = []
        for thread, resp in followers:
            if resp is not None:
                shutdown_response(resp)
            if thread is not None:
                thread.join(2.0)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._ticker is not None:
            self._ticker.join(2.0)

    def validate(self, family: str, hints: Hints) -> list[str]:
        problems = job_error_problems(hints, self.gpu_resource)
        try:
            if hints.cpu is not None:
                cpu_quantity(hints.cpu)
            if hints.memory is not None:
                memory_quantity(hints.memory)
        except (ValueError, AttributeError) as e:
            problems.append(f"{e} (it becomes the Job's resources.requests/limits)")
        return problems

    def submit_limit(self, max_parallel: int) -> int:
        """With an admission queue, more Jobs than ``max_parallel`` wait in it (the queue orders them; queued ones
        hold no slot): ``max_submitted``, by default twice ``max_parallel``."""
        if self.queue_name is None:
            return max_parallel
        return max(max_parallel, self.max_submitted or 2 * max_parallel)

    def carry_code(self, archive: Archive) -> str | None:
        """With ``code_via="configmap"``: keep ``archive`` for the run's ConfigMap (:mod:`.codemap`) and return its
        path in the child pods, instead of the workspace upload; None (upload as usual) otherwise."""
        self._shipping = True
        if self.code_via != "configmap":
            return None
        codemap.check_size(archive)
        self._code = archive
        return codemap.location(archive)

    def spec_transport(self, size: int) -> SpecTransport:
        # Inline specs travel in the pod's env: one env string must stay well under Linux's 128 KiB per-string
        # exec limit, and thousands of Jobs with big env bloat etcd. Larger specs go through the workspace.
        return "inline" if size <= self.inline_spec_limit else "workspace"

    # -- packs (kannon.pack.Packable) -------------------------------------------------------------------------
    def pack_limit(self, hints: Hints) -> int:
        """How many bullets with ``hints`` one pod runs side by side: ``pack``, fewer when their summed cpu or
        memory (the hints', else the template's) would pass ``PACK_CPU`` / ``PACK_MEMORY``. 1 (never packed) when
        either is not declared -- a pod of unknown size could not be bounded -- and for bullets needing any other
        resource (a GPU is not shared)."""
        if self.pack_size <= 1 or hints.gpu:
            return 1
        resources = self._template_resources()
        declared = {**resources.get("limits", {}), **resources.get("requests", {})}
        if set(declared) - SCALED_RESOURCES:
            return 1
        cpu = hints.cpu if hints.cpu is not None else declared.get("cpu")
        memory = hints.memory if hints.memory is not None else declared.get("memory")
        if cpu is None or memory is None:
            return 1
        cores, size = parse_cpu(cpu), parse_memory(memory)
        limit = min(self.pack_size, int(PACK_CPU // cores) if cores else self.pack_size,
                    PACK_MEMORY // size if size else self.pack_size)  # fmt: skip
        return max(1, limit)

    def _template_resources(self) -> dict[str, dict[str, Any]]:
        if self.template is None:
            return {}
        target = template_container(self.template["spec"]["template"]["spec"], self.container, self.python)
        resources = target.get("resources") or {}
        return {k: dict(resources.get(k) or {}) for k in ("requests", "limits")}

    # -- launch ---------------------------------------------------------------------------------------------
    def launch(self, launch: Launch) -> None:
        """Register the attempt and hand its creation to the pool: no API call on the caller's thread."""
        if self._fatal is not None:
            raise self._fatal
        if self._run_lease is not None and self._run_lease.lost.is_set():
            raise BackendError(f"another master took over the run lease {self._run_lease.name}: this one launches "
                               "nothing more")  # fmt: skip
        if self._batch is None or self.template is None or self._creator is None:
            raise BackendError("K8sJobExecutor.launch() called before start()")
        name = job_name(self.job_prefix, launch.run_id, launch.task_id, launch.attempt, launch.family)
        body = build_job(
            self.template, launch, name=name, namespace=self.namespace, python=self.python, container=self.container,
            owner=self.owner, ttl_seconds=self.ttl, gpu_resource=self.gpu_resource, command=self.command(launch),
            secrets=self.run.secrets if self.run is not None else {},
            secret_name=self._secret.name if self._secret is not None else None,
            members=int(launch.labels.get(LABEL_PACK, 1)),
        )  # fmt: skip
        if self._code_map is not None:
            codemap.mount(body, self._code_map.name, self.container)
        if self.code_cache and self._shipping:
            codemap.mount_cache(body, self.code_cache, self.container)
        admission.label_queue(body, self.queue_name)
        with self._state:
            leftover = self._leftovers.pop(launch.task_id, None)
        changes = spec_changes(leftover, body, self.container) if leftover is not None else []
        if leftover is not None and changes:  # an earlier master's Job that runs something else: never adopted
            attempt = self._register(launch, name)
            self._replacing(attempt, leftover.metadata.name, changes)
            self._creator.submit(self._create_step, attempt, body, None, leftover.metadata.name)
            return
        attempt = self._register(launch, leftover.metadata.name if leftover is not None else name)
        self._creator.submit(self._create_step, attempt, body, leftover)

    def command(self, launch: Launch) -> list[str]:
        """The container's argv for ``launch`` (the child entrypoint; tests override it to run plain scripts)."""
        return launch.argv(self.python)

    # -- cancel ---------------------------------------------------------------------------------------------
    def cancel(self, key: str) -> None:
        with self._state:
            attempt = self._by_key.get(key)
            if attempt is None or attempt.phase not in (Phase.CREATING, Phase.PENDING, Phase.RUNNING):
                return
            before = attempt.phase
            attempt.to(Phase.CANCELLING)
        if before is Phase.CREATING:  # its create step deletes the Job once it exists (deleting now could miss it)
            return
        try:
            deleted = self._delete(attempt.name)
        except Exception:
            with self._state:  # not deleted: the watches keep following it
                attempt.cancel_failed(before)
            raise
        if not deleted:  # already gone: nothing will be watched
            self._end_now(attempt, self._cancelled(attempt))

    def cancel_all(self, timeout: float = 30.0) -> list[str]:
        """Delete every live attempt's Job (in parallel, under the rate limit) and wait for those being deleted;
        returns the keys not confirmed gone."""
        keys = self.live_keys()
        if self._pool is not None and len(keys) > 1:
            errors = list(self._pool.map(self._try_cancel, keys))
        else:
            errors = [self._try_cancel(key) for key in keys]
        failed = set()
        for key, error in zip(keys, errors, strict=True):
            if error is not None:  # one failure must not stop the others
                log.warning("%s", self._left_running(key, str(error)))
                failed.add(key)
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._live - failed and time.monotonic() < deadline:
                self._cond.wait(timeout=max(0.0, deadline - time.monotonic()))
            return sorted(self._live)

    def _left_running(self, key: str, why: str) -> str:
        with self._state:
            attempt = self._by_key.get(key)
        if attempt is None:
            return f"attempt {key} may be left running: {why}"
        return f"Job {attempt.name} ({attempt.launch.family} {attempt.launch.task_id}) is left running: {why}"

    def _try_cancel(self, key: str) -> Exception | None:
        try:
            self.cancel(key)
        except Exception as e:
            return e
        return None
