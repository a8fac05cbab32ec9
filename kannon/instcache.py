"""luigi's instance cache: a fresh one for a rebuild, and its keys made to hold each parameter's (name, value)
pair once instead of once per task.

``Register.__call__`` keys every task it constructs by ``(class, ((name, value), ...))``: ~20 pairs per gokart task
(its TaskOnKart settings), nearly all equal across the tasks of a build, each a tuple of its own. Those pairs are
held only by the key, and were 1.1 KB of the ~10 KB a task of a 10,000-task plan costs the master. Keys rebuilt
from shared pairs are equal to the old ones and hash the same, so every lookup luigi makes finds what it found
before: the same instance for the same parameters, as luigi promises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from luigi import task_register

_CACHE = "_Register__instance_cache"  # luigi's name-mangled class attribute


@contextmanager
def fresh_instances() -> Iterator[None]:
    """Construct tasks in a new, empty luigi instance cache, so a rebuild cannot return the master's own objects
    (luigi's cache ignores insignificant parameters), while requires() inside the rebuild still shares instances."""
    saved = getattr(task_register.Register, _CACHE)
    setattr(task_register.Register, _CACHE, {})
    try:
        yield
    finally:
        setattr(task_register.Register, _CACHE, saved)


def share_key_pairs() -> int:
    """Rebuild the instance cache's keys from one copy of each equal (name, value) pair; returns the pairs
    dropped. A cache of another shape than luigi 3's (disabled, or keyed otherwise) is left as it is, and so is one
    that changed meanwhile (a task constructed by a value's ``__hash__``, or by another thread, though not
    atomically: luigi's cache is not thread-safe either): swapping it would lose that entry, and luigi would then
    build a second instance for the same parameters."""
    cache = getattr(task_register.Register, _CACHE, None)
    if not isinstance(cache, dict) or not cache:
        return 0
    items = list(cache.items())  # a copy: hashing a value below runs user code, which may construct tasks
    one: dict[Any, Any] = {}
    rebuilt: dict[Any, Any] = {}
    dropped = 0
    for key, task in items:
        if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[1], tuple)):
            return 0
        pairs = []
        for pair in key[1]:
            kept = one.setdefault(pair, pair)  # hashable: luigi hashed the key before caching under it
            dropped += kept is not pair
            pairs.append(kept)
        rebuilt[(key[0], tuple(pairs))] = task
    now: Any = getattr(task_register.Register, _CACHE, None)
    if now is not cache or len(now) != len(items):
        return 0
    setattr(task_register.Register, _CACHE, rebuilt)
    return dropped
