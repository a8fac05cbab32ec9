"""kannon's one fork server: a pre-imported interpreter that forks a process per request, used by the local backend
(a process per bullet, :mod:`kannon.backends.local`) and by the Kubernetes emulator's warm process pods
(:mod:`kannon.testing.kube`). A fresh interpreter re-imports gokart for every process (~0.5-0.8 s of CPU); a fork
of one that already imported it starts in milliseconds.

* :mod:`kannon.forkserver.server` — the server (standard library only).
* :mod:`kannon.forkserver.client` — starting one (forked from the caller, or a fresh interpreter, possibly another
  one), sending requests, reading its messages, stopping it.

The protocol: one AF_UNIX SOCK_SEQPACKET socket; every datagram is one JSON object, and a request may carry one
descriptor (SCM_RIGHTS). No pickle, no shell. Client to server::

    {"op": "import", "modules": [MOD...], "spares": N,     import more; keep N processes forked ahead of time
     "spare_cgroups": DIR|null}                            ("MOD:FUNC" also calls FUNC() once, e.g. to warm up),
                                                           each in a new cgroup under DIR (DIR/kannon-spare-PID)
    {"op": "run", "id": ID, "mode": "m"|"c"|"script"|"call", "target": MOD|CODE|PATH|"MOD:FUNC", "args": [...],
     "env": {...}, "cwd": DIR, "cgroup_procs": PATH|null, "pid_namespace": BOOL, "report": BOOL,
     "started_env": NAME|null, "started_cpu_env": NAME|null,
     "reuse": BOOL, "keep_threads": [NAME...], "reuse_max": N}
                                                          + the process's stdout/stderr as the attached descriptor
     or, instead of cgroup_procs, "cgroup": {"path": CGROUP, "files": [[NAME, VALUE]...]}: be in CGROUP (a spare's
     own cgroup renamed, or CGROUP made and joined) with those files written (its limits), before it is started

    {"op": "signal", "id": ID, "signal": N}   killpg(SIGNAL) the process group of request ID, only while it runs
                                              (no answer; a reused process may be running another request)

Server to client::

    {"ready": PID, "loaded": [MOD...], "failed": ["MOD: Error: text"...]}   once, first
    {"imported": [MOD...], "failed": [...]}                                  answers "import"
    {"started": ID, "pid": PID} | {"failed": ID, "error": TEXT}            answers "run"
    {"reported": ID, "code": CODE}    with "report": the process's own word, sent just before it exits
    {"reported": ID, "code": 0, "again": true}   with "reuse": it ran cleanly and waits for another request
    {"ended": ID, "pid": PID, "code": CODE}   with "pid_namespace": PID 1 ended (reaped by PID), before PID exits
    {"exited": ID, "pid": PID, "code": CODE}                                 reaped (after its other messages)

CODE is as ``os.waitstatus_to_exitcode``: negative for a signal. A started process leads its own session, so the
client signals it with ``killpg(PID)`` and reaches everything it started; it has ``PR_SET_PDEATHSIG`` SIGKILL (the
server gone: nothing would report it), fd 0 on /dev/null, fds 1 and 2 on the attached descriptor, exactly the
request's environment (plus ``started_env`` = time.monotonic() when it took the request: a spare was forked
earlier) and cwd. With ``cgroup_procs`` it joins that cgroup before it is reported started; with ``pid_namespace``
(root) the program runs as PID 1 of a new PID namespace, with init's signal semantics (the kernel drops a signal
PID 1 has no handler for; pid_namespaces(7)), forked by the reported process, which ignores SIGTERM and ends as
PID 1 ends (what ``unshare --pid --fork`` does).

Modes ``m``, ``c``, ``script`` run as ``python -m|-c|SCRIPT`` would in a fresh interpreter: ``sys.argv``,
``sys.path`` (its first entry, PYTHONPATH, then the server's own path), new stdio (PYTHONUNBUFFERED and
PYTHONIOENCODING honoured), signal handlers, and at the end non-daemon threads then ``atexit``. What a warm process
shares with its siblings, unlike a fresh one: the modules the server imported (under the server's environment),
the hash seed and options read at start-up (PYTHONWARNINGS, ...). Mode ``call`` calls ``FUNC(args)`` and exits with
its return value, in the server's own sys.path, sys.argv and stdio objects (on the new descriptors), without
interpreter shutdown: for a server forked from the program that uses it (the local backend).

**Reuse** (``"reuse": true``, mode ``call`` with ``report``, no cgroup, no PID namespace; the local backend's
``reuse_processes``): after a program that returned 0 the process puts back its signal handlers, wakeup fd and
``sys.path``, checks that no thread but the main one and ``keep_threads`` runs and that no process of its own is
left (it is their subreaper, so orphans count), and if so releases its stdio, says ``again`` and waits for the
next reuse request; otherwise, or once it has served ``reuse_max`` requests, it exits as it would have. Each
reused request starts with the peak resident set reset (``/proc/self/clear_refs``) and ``started_cpu_env`` set
to the CPU seconds used so far, so what a request measures is its own. A signal for a request goes through the
server (``signal`` above), which knows whether the process still runs it.

Ending: EOF on the socket (the client closed it, or died), SIGTERM, or with ``--parent`` that process's death
(PR_SET_PDEATHSIG): the server SIGKILLs every process group it started and its spares, reaps them, and exits.
"""
