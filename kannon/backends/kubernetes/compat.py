"""Ways in: the backend factory (with kannon 0.1.x's ``Kannon(...)`` arguments behind ``legacy=True``) and the
``kannon build`` command-line options."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kannon.backends.kubernetes.executor import K8sJobExecutor

log = logging.getLogger("kannon.kubernetes")

def make_executor(*, legacy: bool = False, **kwargs: Any) -> K8sJobExecutor:
    """The ``kubernetes`` backend factory; ``legacy=True`` takes kannon 0.1.x's ``Kannon(...)`` arguments."""
    if legacy:
        return _from_legacy(**kwargs)
    return K8sJobExecutor(**kwargs)

def _from_legacy(
    api_instance: Any = None,
    template_job: Any = None,
    job_prefix: str = "kannon",
    path_child_script: str | None = None,
    master_pod_name: str | None = None,
    master_pod_uid: str | None = None,
    dynamic_config_paths: Iterable[str] | None = None,
    **rest: Any,
) -> K8sJobExecutor:
    """kannon 0.1.x: ``Kannon(api_instance, template_job, job_prefix, path_child_script, env_to_inherit,
    master_pod_name, master_pod_uid, dynamic_config_paths, max_child_jobs)`` (the core handles the env/parallelism
    ones). ``path_child_script`` is ignored: children run ``python -m kannon run-task``. ``dynamic_config_paths``
    are added to the master's luigi config, which kannon ships to every child."""
    if path_child_script is not None:
        log.info("path_child_script=%r is ignored: kannon children no longer need a child script", path_child_script)
    for path in dynamic_config_paths or ():
        if not str(path).endswith(".ini"):
            raise ValueError(f"dynamic config {path!r}: only .ini luigi config files are supported")
        if not Path(path).is_file():
            raise FileNotFoundError(f"dynamic config {path!r} does not exist")
        import luigi.configuration

        luigi.configuration.LuigiConfigParser.add_config_path(str(path))
    owner: Any = "auto"
    if master_pod_name and master_pod_uid:
        owner = {"apiVersion": "v1", "kind": "Pod", "name": master_pod_name, "uid": master_pod_uid}
    api_client = getattr(api_instance, "api_client", None)
    return K8sJobExecutor(template_job=template_job, api_client=api_client, job_prefix=job_prefix, owner=owner,
                          master_pod_name=master_pod_name, **rest)  # fmt: skip

def add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--job-template", dest="k8s_job_template", metavar="FILE",
                       help="kubernetes: YAML file with the child Job template (default in a cluster: copy the "
                       "master's pod)")  # fmt: skip
    group.add_argument("--namespace", dest="k8s_namespace", metavar="NS",
                       help="kubernetes: namespace for the Jobs (default: template, in-cluster namespace, "
                       "kubeconfig context)")  # fmt: skip
    group.add_argument("--job-prefix", dest="k8s_job_prefix", default="kannon", metavar="PREFIX",
                       help="kubernetes: prefix of the Job names (default: kannon)")  # fmt: skip
    group.add_argument("--pending-timeout", dest="k8s_pending_timeout", type=float, default=300.0, metavar="S",
                       help="kubernetes: fail an attempt whose pod has not started after S seconds (default: 300)")
    group.add_argument("--k8s-start-timeout", dest="k8s_start_timeout", type=float, default=900.0, metavar="S",
                       help="kubernetes: a pod still pulling its image or waiting for a node the cluster autoscaler "
                       "is adding may take up to S seconds in all to start (default: 900; needs list events)")
    group.add_argument("--k8s-log-follow-after", dest="k8s_log_follow_after", type=float, default=1.0, metavar="S",
                       help="kubernetes: stream a pod's log once it has run S seconds; a pod that ends sooner is read "
                       "once at its end (default: 1; 0: every pod from its start)")  # fmt: skip
    group.add_argument("--job-ttl", dest="k8s_job_ttl", type=int, default=3600, metavar="S",
                       help="kubernetes: ttlSecondsAfterFinished of the Jobs (default: 3600)")  # fmt: skip
    group.add_argument("--k8s-python", dest="k8s_python", default="python", metavar="PATH",
                       help="kubernetes: the interpreter in the image (default: python)")  # fmt: skip
    group.add_argument("--k8s-qps", dest="k8s_qps", type=float, default=20.0, metavar="N",
                       help="kubernetes: client-side API rate limit, requests per second (default: 20)")
    group.add_argument("--k8s-queue", dest="k8s_queue", metavar="NAME",
                       help="kubernetes: Kueue LocalQueue for the Jobs (label kueue.x-k8s.io/queue-name; default: "
                       "the template's); a queued Job waits suspended, and --pending-timeout counts from admission")
    group.add_argument("--k8s-max-submitted", dest="k8s_max_submitted", type=int, metavar="N",
                       help="kubernetes, with a queue: Jobs submitted at once, queued ones included (default: twice "
                       "--max-parallel; --max-parallel then caps the admitted ones)")  # fmt: skip

    group.add_argument("--k8s-pack", dest="k8s_pack", type=int, metavar="N",
                       help="kubernetes: up to N bullets that are ready together, with the same declared size "
                       "(hints or template; at most 1 CPU and 2 GiB in all), share one Job's pod side by side "
                       "(default: 8; 1: a pod per bullet)")
    group.add_argument("--k8s-code-via", dest="k8s_code_via", choices=("workspace", "configmap"), default="workspace",
                       help="kubernetes, with --ship-code: carry the code archive in the shared workspace (default) "
                       "or, when the pods share none, in a per-run ConfigMap (compressed code up to 1 MiB)")
    group.add_argument("--k8s-code-cache", dest="k8s_code_cache", metavar="HOSTPATH",
                       help="kubernetes, with --ship-code: a node directory (hostPath) every child pod shares as its "
                       "extraction cache, so a second task on a node fetches and extracts nothing")

def from_options(ns: argparse.Namespace) -> K8sJobExecutor:
    return K8sJobExecutor(
        template_job=getattr(ns, "k8s_job_template", None),
        namespace=getattr(ns, "k8s_namespace", None),
        job_prefix=getattr(ns, "k8s_job_prefix", None) or "kannon",
        # None is "not given"; any given value (0 included) is checked by the executor, never swapped for a default
        pending_timeout=300.0 if getattr(ns, "k8s_pending_timeout", None) is None else ns.k8s_pending_timeout,
        start_timeout=900.0 if getattr(ns, "k8s_start_timeout", None) is None else ns.k8s_start_timeout,
        ttl_seconds_after_finished=getattr(ns, "k8s_job_ttl", 3600),
        python=getattr(ns, "k8s_python", None) or "python",
        qps=20.0 if getattr(ns, "k8s_qps", None) is None else ns.k8s_qps,
        log_follow_after=1.0 if getattr(ns, "k8s_log_follow_after", None) is None else ns.k8s_log_follow_after,
        queue_name=getattr(ns, "k8s_queue", None),
        max_submitted=getattr(ns, "k8s_max_submitted", None),
        code_via=getattr(ns, "k8s_code_via", None) or "workspace",
        code_cache=getattr(ns, "k8s_code_cache", None),
        **({} if getattr(ns, "k8s_pack", None) is None else {"pack": ns.k8s_pack}),
    )
