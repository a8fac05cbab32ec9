"""Parameter values in a hand-off spec: the parameter's own text when it reproduces the value exactly, else typed
JSON for values made of JSON-native parts (an int in an untyped parameter, ``FloatParameter`` given ``1``, int dict
keys, None). Anything else is refused with the task, the parameter and the fix named."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import luigi


class HandoffError(Exception):
    """A task cannot be handed to a child as it is; each of ``problems`` names the task and the fix."""

    def __init__(self, *problems: str) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(problems))



#: what :func:`encode_value` caches: (id(param), text) -> (param, parsed value, the encoded value), least recently
#: used first
Parsed = OrderedDict[tuple[int, str], tuple[luigi.Parameter, Any, dict[str, Any]]]
#: texts :func:`encode_value` remembers: the shared ones (a TaskOnKart setting, a date every task gets) stay, being
#: used; a parameter whose text differs in every task (an index) would otherwise keep ~0.35 KB per task to the end
PARSED_MAX = 4096


def encode_value(where: str, name: str, param: luigi.Parameter, value: Any, parsed: Parsed) -> dict[str, Any]:
    """``{"v": text}`` when the parameter's own text reproduces the value exactly, else ``{"j": typed JSON}``.

    ``parsed`` caches (id(param), text) -> (param, parsed value, encoded value), the PARSED_MAX last used: most
    tasks share most parameter texts (every TaskOnKart setting, typically), and parse() is a function of the text.
    Tasks that share a text share its encoded value too, one dict for all (spec nodes are only read, never changed):
    an encoder keeps the nodes of a whole build, and these dicts were 2.9 of the 5.4 KB it kept per bullet at 1,000
    bullets."""
    try:
        text = param.serialize(value)
    except Exception as e:
        text, why = None, f"{type(param).__name__}.serialize raised {type(e).__name__}: {e}"
    else:
        why = ""
        if not isinstance(text, str):
            text, why = None, f"{type(param).__name__}.serialize returned {type(text).__name__}, not text"
    if text is not None and not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # a spec is UTF-8 JSON: it could not even be written
            raise HandoffError(
                f"{where}: parameter {name} holds a lone surrogate {text[e.start]!r} at position {e.start}, "
                "which is not Unicode text (typically a file name decoded with surrogateescape). Pass "
                "valid text, e.g. name.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')."
            ) from e
    if text is not None:
        # decided on every encode (verify_values or not): the route, "v" or "j", depends on the check
        cached = parsed.get((id(param), text))
        if cached is not None and cached[0] is param and same(cached[1], value):
            parsed.move_to_end((id(param), text))
            return cached[2]
        try:
            back = param.normalize(param.parse(text))
            text_back = param.serialize(back)
        except Exception as e:
            why = f"{type(param).__name__}.parse failed on {text[:80]!r} ({type(e).__name__}: {e})"
        else:
            # The text must bring back the same value (types included: 1 is not 1.0) and the same text (which
            # is what the unique id hashes, and what the child compares).
            if same(back, value) and text_back == text:
                encoded = {"v": text}
                parsed[(id(param), text)] = (param, back, encoded)
                if len(parsed) > PARSED_MAX:
                    parsed.popitem(last=False)
                return encoded
            why = f"its text {text[:80]!r} would arrive as {back!r:.80} ({type(back).__name__})"
    try:
        tree = to_json(value)
        sent = json.dumps(tree, ensure_ascii=False)
        sent.encode("utf-8")  # as in the spec: a lone surrogate cannot be written
        exact = same(param.normalize(from_json(json.loads(sent))), value)
    except Exception:  # not representable as typed JSON: explained below
        exact = False
    if exact:
        return {"j": tree}
    raise HandoffError(
        f"{where}: parameter {name}={value!r:.80} ({type(value).__name__}) cannot be handed to a child: {why}, "
        "and it is not made of JSON values (None, bool, int, float, str, lists and dicts of them). Use a "
        "parameter type whose parse() reads its serialize() back (DateParameter, EnumParameter, "
        "TaskInstanceParameter, ...) or pass a JSON value."
    )


def to_json(value: Any) -> Any:
    """A JSON tree keeping Python types: scalars as themselves, ``{"l": [...]}`` list, ``{"t": [...]}`` tuple,
    ``{"d": [[key, value], ...]}`` any mapping (keys of any JSON-native type). Raises TypeError otherwise."""
    if value is None or type(value) in (bool, int, float, str):
        if type(value) is float and value != value:
            raise TypeError("NaN is not equal to itself")
        return value
    if type(value) in (list, tuple):
        return {"l" if type(value) is list else "t": [to_json(v) for v in value]}
    if isinstance(value, Mapping):
        return {"d": [[to_json(k), to_json(v)] for k, v in value.items()]}
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def from_json(tree: Any) -> Any:
    if isinstance(tree, dict):
        ((tag, items),) = tree.items()
        if tag == "l":
            return [from_json(v) for v in items]
        if tag == "t":
            return tuple(from_json(v) for v in items)
        if tag == "d":
            return {from_json(k): from_json(v) for k, v in items}
        raise ValueError(f"unknown typed-JSON tag {tag!r}")
    if isinstance(tree, list):
        raise ValueError("a bare list in typed JSON")
    return tree


def same(a: Any, b: Any) -> bool:
    """Equal values of the same scalar types (1, 1.0 and True differ), treating list and tuple alike and any
    two mappings alike (luigi normalizes sequences and dicts differently per parameter)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if (isinstance(a, (bool, int, float)) or isinstance(b, (bool, int, float))) and type(a) is not type(b):
        return False
    return bool(a == b)
