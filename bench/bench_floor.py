"""The floor under a master's CPU per task with one Job per bullet (issue #16): what the pieces cost that no kannon
code can avoid while each bullet is one Job, one pod log read and ~10 watch events.

    python bench/bench_floor.py [--count 300]

Each figure is the CPU of the calling thread only (``time.thread_time``), so the emulator, serving in the same
process over HTTPS on loopback, is not charged. Per call / event / task:

- ``create_client``: one Job create through the official client (``BatchV1Api.create_namespaced_job``, a dict body
  of ~4 KB as kannon sends, ``_preload_content=False``, the answer decoded with ``json.loads``), as kannon does;
- ``create_call_api``: the same through ``ApiClient.call_api`` (no generated API method);
- ``create_urllib3``: the same with the client's own urllib3 pool manager and auth header, body serialised once by
  ``json.dumps``: no client code at all. If this is not much cheaper, the request's cost is the HTTP stack
  (urllib3, http.client, ssl), not the client, and only fewer requests per task lower it;
- ``get_client``: one small GET (``read_namespaced_job``), standing in for the pod log read;
- ``watch_event``: one watch event read from a live stream (kannon's ``watch.iter_lines`` over urllib3's chunked
  stream, then ``json.loads``), events of ~4 KB Jobs; no tracker work;
- ``construct_task``: constructing one no-op bullet (luigi parameters through luigi's config; plain gokart pays
  the same).

``floor_ms_per_task`` adds 2 requests, 10 watch events and one construction: the master's CPU per task before
kannon does anything of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]

SPEC = "x" * 1300  # an inline spec of a no-op bullet: ~1.3 KB of base64 in the pod's env


def job_body(i: int) -> dict[str, Any]:
    """The Job kannon's executor sends for a no-op bullet (``manifest.build_job``), held suspended so that no pod
    runs: only the emulator's serving is measured beside the caller."""
    from kannon.backends.base import Launch
    from kannon.backends.kubernetes.manifest import build_job
    from kannon.hints import Hints

    task_id = f"{i:032x}"
    launch = Launch(f"{task_id}-1", "45f195f8594c", task_id, "NoOpBullet", 1,
                    ("run-task", "--spec", "env:KANNON_SPEC", "--task-id", task_id, "--sha256", "0" * 64),
                    {"KANNON_SPEC": SPEC, "KANNON_RUN_ID": "45f195f8594c"}, Hints(), Path("/dev/null"))  # fmt: skip
    template = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "kannon:bench"}]}}}}
    body = build_job(template, launch, name=f"kannon-noopbullet-{i:012x}-1", namespace="default",
                     python=sys.executable, secrets={"KANNON_SPEC_KEY": "k"}, secret_name="kannon-run-env")  # fmt: skip
    body["spec"]["suspend"] = True
    return body


def per_call(fn: Any, items: list[Any]) -> float:
    t0 = time.thread_time()
    for item in items:
        fn(item)
    return 1000 * (time.thread_time() - t0) / len(items)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=300)
    n = p.parse_args().count
    from kubernetes import client, config

    from kannon.backends.kubernetes.watch import iter_lines
    from kannon.testing import KubeEmulator

    print(json.dumps({"bench": "machine", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                      "cpus": os.cpu_count(), "python": platform.python_version(),
                      "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}), flush=True)  # fmt: skip
    with KubeEmulator() as kube:  # suspended Jobs: no pods run, the emulator only serves
        kubeconfig = str(Path(kube.workdir) / "kubeconfig")
        kube.write_kubeconfig(kubeconfig)
        api = config.new_client_from_config(kubeconfig)
        batch = client.BatchV1Api(api)
        bodies = [job_body(i) for i in range(4 * n + 20)]
        for b in bodies[:20]:  # warm: connections open, code paths loaded
            batch.create_namespaced_job("default", b, _preload_content=False).data

        # watch events: one stream read by a thread of its own while the creates below make its events
        events, event_bytes = [0], [0]
        watch_cpu = [0.0]
        resp = batch.list_namespaced_job("default", watch=True, _preload_content=False, timeout_seconds=600)
        stop = threading.Event()

        def read() -> None:
            t0 = time.thread_time()
            for line in iter_lines(resp):
                if line.strip():
                    json.loads(line)
                    events[0] += 1
                    event_bytes[0] += len(line)
                    watch_cpu[0] = time.thread_time() - t0
                if stop.is_set():
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        rows: dict[str, float] = {}
        rows["create_client"] = per_call(
            lambda b: json.loads(batch.create_namespaced_job("default", b, _preload_content=False).data),
            bodies[20 : 20 + n])  # fmt: skip
        path = "/apis/batch/v1/namespaces/{namespace}/jobs"
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        rows["create_call_api"] = per_call(
            lambda b: json.loads(api.call_api(path, "POST", {"namespace": "default"}, [], dict(headers), body=b,
                                              auth_settings=["BearerToken"], _preload_content=False,
                                              _return_http_data_only=True).data),
            bodies[20 + n : 20 + 2 * n])  # fmt: skip
        cfg = api.configuration
        url = cfg.host + "/apis/batch/v1/namespaces/default/jobs"
        auth = {s["key"]: s["value"] for s in cfg.auth_settings().values() if s["in"] == "header"}

        def raw(b: dict[str, Any]) -> Any:
            hdrs = {**headers, **auth, "User-Agent": api.user_agent}
            r = api.rest_client.pool_manager.request("POST", url, body=json.dumps(b).encode(), headers=hdrs)
            assert r.status == 201, r.status
            return json.loads(r.data)

        rows["create_urllib3"] = per_call(raw, bodies[20 + 2 * n : 20 + 3 * n])
        names = [b["metadata"]["name"] for b in bodies[20 : 20 + n]]
        rows["get_client"] = per_call(
            lambda name: batch.read_namespaced_job(name, "default", _preload_content=False).data, names)
        deadline = time.monotonic() + 60
        while events[0] < 3 * n + 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        rows["watch_event"] = 1000 * watch_cpu[0] / max(events[0], 1)

    import _dags

    rows["construct_task"] = per_call(lambda i: _dags.NoOpBullet(n=i), list(range(100_000, 100_000 + 2 * n)))
    floor = 2 * rows["create_client"] + 10 * rows["watch_event"] + rows["construct_task"]
    size = event_bytes[0] // max(events[0], 1)
    print(json.dumps({"bench": "floor", "count": n, "watch_events_read": events[0], "event_bytes": size,
                      **{f"{k}_ms": round(v, 3) for k, v in rows.items()},
                      "floor_ms_per_task": round(floor, 2), "target_master_cpu_ms_per_task": 5.0}))  # fmt: skip
    print(json.dumps({"bench": "machine", "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
