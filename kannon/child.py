"""The child entrypoint every backend runs: ``python -m kannon run-task --spec LOC --task-id ID --sha256 HEX``.

Order matters: read the spec and check its hash before importing any module it names; load the master's config
before importing user modules (module-level task instances read it); rebuild in a fresh luigi instance cache (not
the objects the modules built at import time) and verify every unique id and constructor value; refuse if an
upstream output is missing; run; confirm the output exists. Exit codes: kannon.exitcodes. Only a spec problem is
BAD_SPEC; anything else the child itself raises (MemoryError included) is CRASHED with its type named.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from kannon import exitcodes, speccrypt  # speccrypt: loaded with the entry point (fork server, warm pod image)

log = logging.getLogger("kannon.child")
_attempt: dict[str, Any] = {}  # the rebuilt task, once there is one (see _write_result)
SIGTERM_THREAD = "kannon-sigterm"
_wakeup: list[int] = []  # the write end of the SIGTERM thread's pipe, once it runs (a reused process keeps both)


def _say(message: str) -> None:
    # One line the backends surface as the failure reason (see exitcodes.describe).
    sys.stderr.write(exitcodes.REASON_PREFIX + message.replace("\n", " ") + "\n")
    sys.stderr.flush()


def _apply_local_limits() -> None:
    """Local backend only: die with the master, and join the memory cgroup the master made for a memory hint.

    Joining comes before reading the spec, so everything the task allocates is charged to it (as in a container).
    """
    parent = os.environ.pop("KANNON_PARENT_PID", None)
    if parent and sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the kernel kills us when our parent dies
        if os.getppid() != int(parent):  # the parent died before prctl took effect
            os._exit(128 + signal.SIGKILL)
    cgroup = os.environ.pop("KANNON_MEMORY_CGROUP", None)
    if cgroup:
        try:
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        except OSError as e:  # running unlimited would hide the problem until Kubernetes OOM-kills the task
            _say(f"cannot enforce the task's memory hint: joining the memory cgroup {cgroup} failed: {e}")
            os._exit(1)


_terminating = threading.Lock()


def _terminate() -> None:
    # What SIG_DFL would do, done by hand because PID 1 of a PID namespace (the child in a Kubernetes pod) gets no
    # default action: the kernel drops a signal its init has no handler for, and the pod then ran until SIGKILL.
    if not _terminating.acquire(blocking=False):
        return  # the other path is already ending the process
    if os.getpgrp() == os.getpid():  # we lead our group: what the task started in it is ours to stop
        with contextlib.suppress(OSError):
            os.killpg(os.getpgrp(), signal.SIGTERM)  # reaches us too: _terminating makes that a no-op
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(128 + signal.SIGTERM)  # 143, as a process the signal killed; a container runtime reports the same


def _on_sigterm(signum: int, frame: object) -> None:
    _terminate()


def _watch_wakeup(fd: int) -> None:
    while True:
        try:
            data = os.read(fd, 512)
        except OSError:
            return
        if not data:
            return
        # only while SIGTERM is still ours: a task that installed its own handler (to clean up, or to ignore
        # it) gets its way, and the backend's SIGKILL after the grace period ends it as before
        if signal.SIGTERM in data and signal.getsignal(signal.SIGTERM) is _on_sigterm:
            _terminate()


def install_sigterm_handler() -> None:
    """End promptly on SIGTERM (cancel, activeDeadlineSeconds, pod deletion) whatever our PID; see _terminate.

    Python runs a handler in the main thread once it next executes bytecode, and the kernel may hand a process's
    signal to any thread: a main thread blocked in a C call (the task's sleep(), a long computation) would not see
    it for as long. The wakeup fd is written by whichever thread received the signal, so a thread reading it acts
    at once (while an asyncio loop owns the wakeup fd, that loop wakes the main thread instead)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    if _wakeup and any(t.name == SIGTERM_THREAD for t in threading.enumerate()):  # a reused process: still there
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(_wakeup[0], warn_on_full_buffer=False)
        return
    r, w = os.pipe()  # not inherited by the task's subprocesses (PEP 446)
    os.set_blocking(w, False)
    try:
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except ValueError:  # not the main thread: the handler alone
        os.close(r)
        os.close(w)
        return
    _wakeup[:] = [w]
    threading.Thread(target=_watch_wakeup, args=(r,), daemon=True, name=SIGTERM_THREAD).start()


def _setup_logging() -> None:
    root = logging.getLogger()
    for h in list(root.handlers):  # a forked child inherits the master's (possibly live-display) handlers
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.disable(logging.NOTSET)


@contextmanager
def status_to_output() -> Iterator[None]:
    """While the task runs, each ``set_status_message`` / ``set_progress_percentage`` also writes one marked line
    (kannon.logtail.STATUS_PREFIX) to stderr, which the master turns into a "status" event on every backend.

    luigi's and gokart's workers hand a task callbacks that end in the scheduler's ``set_task_status_message`` /
    ``set_task_progress_percentage``; the child's scheduler is a local one in this process, so wrapping those two
    methods catches every call whichever worker runs the task, and the task keeps luigi's own behaviour."""
    from luigi.scheduler import Scheduler

    from kannon.logtail import status_line

    saved_message, saved_percentage = Scheduler.set_task_status_message, Scheduler.set_task_progress_percentage

    def emit(line: str) -> None:
        with contextlib.suppress(Exception):  # a closed stream must not fail the task over a status line
            sys.stdout.flush()  # so the marked line does not land inside a half-written line of the task's own
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def set_message(self: Scheduler, task_id: str, status_message: object) -> Any:
        emit(status_line(message=status_message))
        return saved_message(self, task_id, status_message)

    def set_percentage(self: Scheduler, task_id: str, progress_percentage: object) -> Any:
        emit(status_line(percentage=progress_percentage))
        return saved_percentage(self, task_id, progress_percentage)

    Scheduler.set_task_status_message = set_message
    Scheduler.set_task_progress_percentage = set_percentage
    try:
        yield
    finally:
        Scheduler.set_task_status_message = saved_message
        Scheduler.set_task_progress_percentage = saved_percentage


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    argv = list(argv)
    # Fast path for exactly what handoff.child_args() builds (building an ArgumentParser costs ~1 ms per child);
    # anything else, including --help and mistakes, goes through argparse and its messages.
    if len(argv) == 6 and argv[0::2] == ["--spec", "--task-id", "--sha256"] and not any(
        a.startswith("-") for a in argv[1::2]
    ):
        return argparse.Namespace(spec=argv[1], task_id=argv[3], sha256=argv[5])
    p = argparse.ArgumentParser(prog="kannon run-task", description="Run one handed-off task (used by backends).")
    p.add_argument("--spec", required=True, help="spec location: path, s3://..., gs://..., or env:NAME")
    p.add_argument("--task-id", required=True, help="the unique id the master expects")
    p.add_argument("--sha256", required=True, help="sha256 of the spec bytes")
    return p.parse_args(list(argv))


def main(argv: Sequence[str]) -> int:
    _attempt.clear()  # a reused process (LocalExecutor(reuse_processes=True)) ran another bullet before
    install_sigterm_handler()
    args = parse_args(argv)
    meter = _start_measuring()
    code = _main(args)
    _write_result(meter, args.task_id, args.sha256, code)
    return code


def _main(args: argparse.Namespace) -> int:
    from kannon import secretfile

    try:
        secretfile.load()  # first: everything after (spec key, config, user code) may need the run's secrets
    except secretfile.SecretFileError as e:
        _say(str(e))
        return exitcodes.BAD_SPEC
    _apply_local_limits()
    _setup_logging()
    return run(args.spec, args.task_id, args.sha256)


def exception_text(e: BaseException) -> str:
    """``Type: message``, or the type alone when the message is empty (``MemoryError()`` says nothing else)."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _remote_error(cause: BaseException | None) -> None:
    """One JSON line describing the task's exception, read back by ``kannon.build`` (kannon.api) from the log tail:
    the class name, message and traceback as text, never a pickle."""
    if cause is None:
        return
    tb = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
    doc = {"type": type(cause).__name__, "module": type(cause).__module__, "message": str(cause),
           "traceback": tb[-exitcodes.REMOTE_ERROR_MAX_TRACEBACK:]}  # fmt: skip
    sys.stderr.write(exitcodes.REMOTE_ERROR_PREFIX + json.dumps(doc, ensure_ascii=True) + "\n")
    sys.stderr.flush()


def run(location: str, task_id: str, sha256: str) -> int:
    try:
        return _run(location, task_id, sha256)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # MemoryError and everything else: never a "bad spec", never an empty reason
        traceback.print_exc()
        _say(f"the child failed: {exception_text(e)}")
        return exitcodes.CRASHED


def _mismatch_hint(extract_dir: object) -> str:
    if extract_dir is not None:
        return (" The code is shipped, so master and child run the same code: a dependency version differs "
                "between the master and the image (compare `pip freeze` in both).")
    return " If the child's code differs from the master's, --ship-code sends the master's code with the run."


def _run(location: str, task_id: str, sha256: str) -> int:
    from kannon import handoff, storage

    try:
        data = storage.read_bytes(location)
    except (OSError, ValueError) as e:
        _say(f"bad spec at {location}: cannot read it ({exception_text(e)})")
        return exitcodes.BAD_SPEC

    try:  # sealed with the run's key (kannon.speccrypt): open it before reading a byte of it
        data = speccrypt.open_sealed(data, os.environ.get(speccrypt.KEY_ENV))
    except speccrypt.SpecKeyError as e:
        _say(f"spec at {location}: {e}")
        return exitcodes.SPEC_KEY
    try:
        handoff.verify_hash(data, sha256)
        doc = handoff.parse_spec(data)
        if doc["target"] != task_id:
            raise handoff.SpecError(f"the spec is for task {doc['target']}, not {task_id}")
    except handoff.SpecError as e:
        _say(f"bad spec at {location}: {e}")
        return exitcodes.BAD_SPEC

    # Shipped code (docs/code-shipping.md): fetched, verified against the sha256 the hashed spec names, extracted
    # and put first on sys.path before anything of the user's is imported.
    from kannon import ship_child

    extract_dir = None
    try:
        ref = ship_child.code_ref(doc)
        if ref is not None:
            extract_dir = ship_child.fetch_and_activate(*ref)
            if ship_child.stale_modules(extract_dir):  # a warm process holds older copies: start cold instead
                ship_child.restart_cold(["-m", "kannon", *handoff.child_args(location, task_id, sha256)])
    except ship_child.ShipError as e:
        _say(f"shipped code for task {task_id}: {e}")
        return exitcodes.BAD_SPEC

    # the task's code and its subprocesses have no use for it; kept in memory to seal dynamic requests
    _attempt["key"] = os.environ.pop(speccrypt.KEY_ENV, None)
    import luigi

    from kannon import runner

    runner.quiet_luigi()
    handoff.apply_config(doc["config"])
    target_node = doc["nodes"][task_id]
    label = f"{target_node['class'].rsplit('.', 1)[-1]} [{task_id}]"
    with handoff.fresh_instances():  # a forked child inherits the master's cached instances: never reuse them
        try:
            handoff.import_modules(doc)
        except Exception as e:
            traceback.print_exc()
            fix = ("the shipped code has it, so the image lacks a package it imports" if extract_dir is not None
                   else "the child's image or environment must contain the same code and packages as the master, "
                   "or run with --ship-code to send the code with the run")  # fmt: skip
            _say(f"{label}: cannot import {target_node['module']}: {exception_text(e)}. {fix[0].upper()}{fix[1:]}.")
            return exitcodes.IMPORT_FAILED
        shadowed = ship_child.stale_modules(extract_dir) if extract_dir is not None else []
        if shadowed:
            _say(f"{label}: shipped code for task {task_id}: {', '.join(shadowed[:5])} was imported from the image, "
                 f"not from the shipped archive in {extract_dir}; remove the project's code from the image's "
                 "sys.path (PYTHONPATH, working directory, an installed copy)")  # fmt: skip
            return exitcodes.BAD_SPEC
    # Tasks the modules built at import time sit in that cache; luigi would hand them to the rebuild (its cache
    # keys on the values passed, not on the config-derived ones those objects hold). Rebuild and run in a new one.
    with handoff.fresh_instances():
        try:
            built = handoff.rebuild(doc)
        except handoff.IdMismatchError as e:
            _say(f"{label}: {e}{_mismatch_hint(extract_dir)}")
            return exitcodes.ID_MISMATCH
        except handoff.SpecError as e:
            _say(f"{label}: bad spec at {location}: {e}")
            return exitcodes.BAD_SPEC
        except Exception as e:  # the task's own code (a constructor, requires()) raised: not the spec's fault
            traceback.print_exc()
            _say(f"{label}: rebuilding the task raised {exception_text(e)} (in its constructor or requires())")
            return exitcodes.TASK_FAILED
        for rebuilt in built.values():
            # The master already applied `rerun` while planning; re-applying it here would delete outputs.
            if hasattr(rebuilt, "_rerun_state"):
                rebuilt._rerun_state = False
        task: luigi.Task = built[task_id]
        _attempt["task"] = task  # for the outputs' size in the child-result record
        try:
            handoff.check_requirements(task, doc.get("requires", {}))
        except handoff.IdMismatchError as e:
            _say(f"{label}: {e}{_mismatch_hint(extract_dir)}")
            return exitcodes.ID_MISMATCH
        except Exception as e:  # requires() itself raised
            traceback.print_exc()
            _say(f"{label}: requires() raised {exception_text(e)}")
            return exitcodes.TASK_FAILED
        log.info("running %s", handoff.describe(task))
        from kannon import dynamic

        try:
            with status_to_output(), dynamic.intercept(task):
                runner.run_one(task)
        except dynamic.DynamicRequest as req:  # before anything catching KeyboardInterrupt, which it is
            return _report_requested(doc, task_id, req.tasks)
        except runner.UpstreamMissingError as e:
            _say(str(e))
            return exitcodes.UPSTREAM_MISSING
        except runner.TaskRaisedError as e:
            _remote_error(e.cause)
            _say(str(e))  # gokart's worker has already logged the traceback
            return exitcodes.TASK_FAILED
        except runner.OutputMissingError as e:
            _say(str(e))
            return exitcodes.OUTPUT_MISSING
    log.info("done %s", handoff.describe(task))
    return exitcodes.OK


# -- the child-result record (kannon.childresult, issue 17) ------------------------------------------------------
def _start_measuring() -> Any:
    """A meter started with the attempt, and where the record goes (left in the environment: a child that
    re-executes itself for shipped code must find it again)."""
    from kannon import childresult, measure

    _attempt["path"] = os.environ.get(childresult.RESULT_PATH_ENV)
    return measure.Meter()


def _output_paths() -> list[str]:
    task = _attempt.get("task")
    if task is None:
        return []
    import luigi.task

    from kannon import runner

    try:
        return [runner.target_path(t) for t in luigi.task.flatten(task.output())]
    except Exception:  # output() of a broken task: no size rather than a changed outcome
        return []


def _write_result(meter: Any, task_id: str, sha256: str, code: int) -> None:
    """Measure the attempt and write its record where the backend asked (nowhere if it did not). Never changes the
    outcome: a record that cannot be written leaves the master with the exit code, as before records existed."""
    path = _attempt.get("path")
    if not path:
        return
    from kannon import childresult

    try:
        attempt = int(os.environ.get("KANNON_ATTEMPT", "1"))
        outcome = "ok" if code == exitcodes.OK else (exitcodes.failure_class(code) or "NonZeroExit")
        record = childresult.ChildResult(task=task_id, spec_sha256=sha256, attempt=attempt, outcome=outcome,
                                         exit_code=code, usage=meter.usage(_output_paths()),
                                         requested=_attempt.get("requested", ()))  # fmt: skip
        # The same 4 KiB cut on every backend (a Kubernetes termination message holds no more): a pipeline's
        # records do not depend on where it runs.
        childresult.write_atomic(path, record, max_bytes=childresult.TERMINATION_MESSAGE_MAX)
    except Exception as e:
        log.warning("kannon: could not write the child-result record to %s: %s", path, exception_text(e))


# -- dynamic dependencies (issue 13, docs/design.md "Dynamic dependencies") ---------------------------------------
def _report_requested(doc: dict[str, Any], task_id: str, tasks: list[Any]) -> int:
    """run() yielded incomplete tasks: write each one's spec (sealed, next to this task's own spec) and list them in
    the record by id and plaintext hash; the master plans them and launches this task again."""
    import hashlib

    from kannon import childresult, dynamic, handoff, storage

    attempt = int(os.environ.get("KANNON_ATTEMPT", "1"))
    key = _attempt.get("key")
    names = ", ".join(handoff.describe(t) for t in tasks[:3])
    if not key or not _attempt.get("path"):
        _say(f"run() yielded {names}, but the child has no spec key or no result record to report them with "
             "(a backend from before dynamic dependencies?); make the yielding task a TaskOnKart: master tasks may "
             "yield")  # fmt: skip
        return exitcodes.TASK_FAILED
    encoder = handoff.Encoder()
    requested = []
    try:
        for t in tasks:
            data = encoder.spec(t, doc["run_id"], doc["config"], doc.get("sys_path", ()), code=doc.get("code"))
            uid = handoff.unique_id(t)
            where = dynamic.requested_location(_attempt["task"], doc["run_id"], task_id, attempt, uid)
            storage.write_bytes(where, speccrypt.seal(data, key))
            requested.append(childresult.Requested(uid, hashlib.sha256(data).hexdigest()))
    except handoff.HandoffError as e:
        _say(f"run() yielded tasks that cannot be handed to the master: {'; '.join(e.problems)}")
        return exitcodes.TASK_FAILED
    _attempt["requested"] = tuple(dict.fromkeys(requested))
    _say(f"run() yielded {len(requested)} task(s) not all complete ({names}); the master schedules them and runs "
         "this task again")  # fmt: skip
    return exitcodes.REQUESTED

