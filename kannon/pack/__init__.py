"""Packs: one process (a Kubernetes pod) runs several bullets side by side, so the per-pod costs (API calls, pod
start-up) are paid once for k bullets. ``python -m kannon run-pack`` (kannon.pack.runner) forks one member per
bullet; what it is handed and what it writes are in kannon.pack.protocol.
"""
