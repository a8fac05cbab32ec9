"""What a pack's runner is handed, and what its log says (standard library only; no I/O).

Handed: ``KANNON_PACK`` holds ``{"v": 1, "members": [{"args": [...], "env": {...}}, ...]}``; a member's ``args``
are its command after ``python -m kannon`` (``["run-task", "--spec", ...]``), its ``env`` the variables it gets
over the pod's.

Written, to the runner's stdout (the pod's log): each line member ``i`` writes, as ``[i] `` + the line; the runner's
own lines unprefixed; and, once member ``i`` has ended, one unprefixed marker line
``kannon-pack: member {i} ended {"code": C, "record": R}``: C its exit code as a shell reports it (128 + signal),
R the text of its child-result record (kannon.childresult), or null when it wrote none.

A reader splits the log on ``"\\n"`` only: ``str.splitlines`` also splits at characters a member may print (``\\r``,
``\\x85``, ``\\u2028``), and the pieces after one would lose their prefix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PACK_ENV = "KANNON_PACK"
#: label on a pack's Job/child: how many members it runs (a restarted master deletes leftover packs, never adopts)
LABEL_PACK = "kannon.io/pack"
VERSION = 1
END_PREFIX = "kannon-pack: member "

# An index as the runner writes it: decimal, no sign, no leading zero; [0-9], not \d (which takes any script's digits)
_MEMBER = re.compile(r"\[(0|[1-9][0-9]*)\] ")
_END = re.compile(r"kannon-pack: member (0|[1-9][0-9]*) ended (\{.*\})\r?\n?")


class PackError(ValueError):
    """``KANNON_PACK`` is not a pack this runner can run (the message is one line)."""


@dataclass(frozen=True)
class Member:
    args: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MemberEnd:
    code: int
    record: str | None


def encode(members: Sequence[Member]) -> str:
    """The value of ``KANNON_PACK`` for ``members`` (ASCII JSON on one line)."""
    doc = {"v": VERSION, "members": [{"args": list(m.args), "env": dict(m.env)} for m in members]}
    return json.dumps(doc, separators=(",", ":"))


def decode(text: str) -> list[Member]:
    """The members in a ``KANNON_PACK`` value; PackError for anything malformed."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise PackError(f"not JSON: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(doc, dict):
        raise PackError(f"not a JSON object but {type(doc).__name__}")
    version = doc.get("v")
    if isinstance(version, bool) or version != VERSION:  # True == 1 in Python: not a version
        raise PackError(f"version {version!r}, this kannon reads version {VERSION}")
    members = doc.get("members")
    if not isinstance(members, list) or not members:
        raise PackError("'members' must be a non-empty list")
    return [_member(n, m) for n, m in enumerate(members)]


def _member(n: int, m: Any) -> Member:
    if not isinstance(m, dict):
        raise PackError(f"member {n} is not an object")
    args, env = m.get("args"), m.get("env")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        raise PackError(f"member {n}: 'args' must be a non-empty list of strings")
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise PackError(f"member {n}: 'env' must be an object of strings")
    for k, v in env.items():  # what os.environ would refuse only in the member, after the pack started
        if not k or "=" in k or "\0" in k or "\0" in v:
            raise PackError(f"member {n}: {k!r} is not an environment variable a process can have")
    return Member(args=tuple(args), env=dict(env))


def member_line(i: int, line: bytes) -> bytes:
    """Member ``i``'s ``line`` as the runner writes it: prefixed, ending in one newline (each line of several)."""
    prefix = b"[%d] " % i
    body = line[:-1] if line.endswith(b"\n") else line
    return b"".join(prefix + part + b"\n" for part in body.split(b"\n"))


def end_line(i: int, code: int, record: str | None) -> bytes:
    """The marker saying member ``i`` has ended (json.dumps escapes every newline: it is one line)."""
    return f"{END_PREFIX}{i} ended {json.dumps({'code': code, 'record': record})}\n".encode("ascii")


def parse_line(line: str) -> tuple[int | None, str]:
    """(i, the text member ``i`` wrote) for a member's line; (None, ``line``) for any other."""
    m = _MEMBER.match(line)
    if m is None:
        return None, line
    return int(m.group(1)), line[m.end() :]


def parse_end(line: str) -> tuple[int, MemberEnd] | None:
    """(i, how member ``i`` ended) for a marker line, None for anything else."""
    m = _END.fullmatch(line)
    if m is None:
        return None
    try:
        doc = json.loads(m.group(2))
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    code, record = doc.get("code"), doc.get("record")
    if isinstance(code, bool) or not isinstance(code, int) or not (record is None or isinstance(record, str)):
        return None
    return int(m.group(1)), MemberEnd(code=code, record=record)


def split(lines: Iterable[str], count: int) -> tuple[list[list[str]], dict[int, MemberEnd], list[str]]:
    """A pack's log of ``count`` members: each member's lines (unprefixed, in order), the members' ends, and the
    runner's other lines. A line naming an index the pack does not have is the runner's (a stray line, not a
    crash)."""
    members: list[list[str]] = [[] for _ in range(count)]
    ends: dict[int, MemberEnd] = {}
    other: list[str] = []
    for line in lines:
        i, text = parse_line(line)
        if i is not None and i < count:
            members[i].append(text)
            continue
        end = parse_end(line) if i is None else None
        if end is not None and end[0] < count:
            ends[end[0]] = end[1]
        else:
            other.append(line)
    return members, ends, other


__all__ = [
    "LABEL_PACK",
    "PACK_ENV",
    "Member",
    "MemberEnd",
    "PackError",
    "decode",
    "encode",
    "end_line",
    "member_line",
    "parse_end",
    "parse_line",
    "split",
]
