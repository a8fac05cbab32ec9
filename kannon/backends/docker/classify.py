"""What a container's end means: the Finished event for its final state, with the hint for a container setup."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kannon import exitcodes, logtail
from kannon.backends.base import Finished, Launch

# What to check in a container setup when the child exits with one of its own codes (kannon/exitcodes.py).
DOCKER_HINTS = {
    exitcodes.BAD_SPEC: "is the run directory mounted into the container at the same path?",
    exitcodes.ID_MISMATCH: "is the code in the image the same version as the master's?",
    exitcodes.UPSTREAM_MISSING: "is the workspace mounted into the container, or on storage both can reach?",
    exitcodes.OUTPUT_MISSING: "is the workspace a bind mount the master sees at the same path?",
    exitcodes.IMPORT_FAILED: "is the pipeline's code installed in the image, or mounted (--volume)?",
}


def classify(
    launch: Launch,
    state: Mapping[str, Any],
    *,
    cancelled: bool,
    where: str,
    log_tail: tuple[str, ...],
    command: str = "python",
) -> Finished:
    """The Finished event for a container's final ``State`` (from inspect); ``command`` is argv[0]."""
    code = state.get("ExitCode")
    exit_code = int(code) if code is not None else None

    def done(reason: str | None = None, failure_class: str | None = None) -> Finished:
        return Finished(launch.key, exit_code, reason, failure_class, log_tail=log_tail, where=where)

    if cancelled:
        return done("cancelled: the container was stopped", "Cancelled")
    if state.get("OOMKilled"):
        limit = launch.hints.memory
        if limit is not None:
            return done(
                f"out of memory: the container was killed at its memory limit of {limit} (exit {exit_code}); "
                "raise `memory` in the task's hints",
                "OOMKilled",
            )
        return done(
            f"out of memory: the kernel killed the container (exit {exit_code}) with no memory limit set, so the "
            "host ran out of memory; set `memory` in the task's hints to a size that fits",
            "OOMKilled",
        )
    if exit_code == 0:
        return done()
    klass = exitcodes.failure_class(exit_code)
    if exit_code in (126, 127) and any("exec " in line and " failed" in line for line in log_tail[-3:]):
        # The init process (or the engine) could not execute the command: a setup error, not the task's.
        return done(
            f"exit code {exit_code}: the container could not run {command!r} ({log_tail[-1].strip()}); does the "
            "image provide that interpreter? (set DockerExecutor(python=...) / --docker-python)",
            "ContainerStart",
        )
    no_kannon = logtail.kannon_import_failure(log_tail) if exit_code == 1 else None
    if no_kannon is not None:
        return done(logtail.kannon_import_reason(command, no_kannon, "DockerExecutor(python=...) / --docker-python"),
                    "KannonNotImportable")  # fmt: skip
    if exit_code == 137:
        # The engine knows whether its memory limit did it, so say so rather than guess.
        reason = (
            "killed by SIGKILL (exit code 137), not at the container's memory limit (the engine reports no OOM "
            "kill): killed from outside, or the host ran out of memory"
        )
    else:
        reason = exitcodes.describe(exit_code, log_tail)
        if exit_code in DOCKER_HINTS:
            reason += f" ({DOCKER_HINTS[exit_code]})"
    error = str(state.get("Error") or "").strip()
    if error:
        reason += f"; engine: {error}"
    return done(reason, klass)
