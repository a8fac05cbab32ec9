"""Label and field selectors (kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors,
.../field-selectors/), parsed with the grammar of k8s.io/apimachinery/pkg/labels/selector.go."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kannon.testing.kube.errors import ApiError, bad_request
from kannon.testing.kube.validation import label_key_errors, label_value_errors

_SPECIAL = set(",=!()<> \t\n")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # exists, !, =, !=, in, notin, gt, lt
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        val = labels.get(self.key)
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("=", "in"):
            return has and val in self.values
        if self.op in ("!=", "notin"):
            # Real semantics: a missing key satisfies != and notin.
            return not has or val not in self.values
        if self.op in ("gt", "lt"):
            if not has or val is None:
                return False
            try:
                n = int(val)
            except ValueError:
                return False
            bound = int(self.values[0])
            return n > bound if self.op == "gt" else n < bound
        return False


class LabelSelector:
    def __init__(self, requirements: list[Requirement]) -> None:
        self.requirements = requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        lab = labels or {}
        return all(r.matches(lab) for r in self.requirements)


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c in " \t\n":
            i += 1
            continue
        if text.startswith(("==", "!="), i):
            out.append(text[i : i + 2])
            i += 2
            continue
        if c in ",=!()<>":
            out.append(c)
            i += 1
            continue
        j = i
        while j < len(text) and text[j] not in _SPECIAL:
            j += 1
        out.append(text[i:j])
        i = j
    return out


def _fail(msg: str) -> ApiError:
    return bad_request(f"unable to parse requirement: {msg}")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse ``a=b,c!=d,e in (x,y),f,!g``; raise ApiError(400 BadRequest) on a bad selector."""
    if not text or not text.strip():
        return LabelSelector([])
    toks = _tokens(text)
    reqs: list[Requirement] = []
    pos = 0

    def peek() -> str | None:
        return toks[pos] if pos < len(toks) else None

    def ident(what: str) -> str:
        nonlocal pos
        tok = peek()
        if tok is None or tok in ",=!()<>" or tok in ("==", "!="):
            raise _fail(f"found '{tok or 'end of string'}', expected: {what}")
        pos += 1
        return tok

    def check_key(key: str) -> None:
        errs = label_key_errors(key)
        if errs:
            raise _fail(f'key: Invalid value: "{key}": {"; ".join(errs)}')

    def check_value(value: str) -> None:
        errs = label_value_errors(value)
        if errs:
            raise _fail(f'values[0][{key}]: Invalid value: "{value}": {"; ".join(errs)}')

    while True:
        key: str
        if peek() == "!":
            pos += 1
            key = ident("identifier")
            check_key(key)
            reqs.append(Requirement(key, "!"))
        else:
            key = ident("identifier")
            check_key(key)
            op = peek()
            if op is None or op == ",":
                reqs.append(Requirement(key, "exists"))
            elif op in ("=", "==", "!="):
                pos += 1
                # An empty value is legal (``a=``), so a following ',' or end means "".
                nxt = peek()
                value = "" if nxt is None or nxt == "," else ident("identifier")
                check_value(value)
                reqs.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
            elif op in ("in", "notin"):
                pos += 1
                if peek() != "(":
                    raise _fail(f"found '{peek() or 'end of string'}', expected: '('")
                pos += 1
                values: list[str] = []
                while True:
                    tok = peek()
                    if tok == ")":
                        pos += 1
                        break
                    if tok == ",":
                        pos += 1
                        values.append("")
                        continue
                    v = ident("identifier or ')'")
                    check_value(v)
                    values.append(v)
                    if peek() == ",":
                        pos += 1
                        if peek() == ")":
                            values.append("")
                    elif peek() != ")":
                        raise _fail(f"found '{peek() or 'end of string'}', expected: ',' or ')'")
                if not values:
                    raise _fail("for 'in', 'notin' operators, values set can't be empty")
                reqs.append(Requirement(key, op, tuple(values)))
            elif op in ("<", ">"):
                pos += 1
                v = ident("integer")
                if not re.fullmatch(r"-?\d+", v):
                    raise _fail(f"for 'Gt', 'Lt' operators, the value must be an integer: {v}")
                reqs.append(Requirement(key, "gt" if op == ">" else "lt", (v,)))
            else:
                raise _fail(f"found '{op}', expected: '=', '!=', '==', 'in', notin'")
        tok = peek()
        if tok is None:
            break
        if tok != ",":
            raise _fail(f"found '{tok}', expected: ',' or 'end of string'")
        pos += 1
        if peek() is None:
            raise _fail("found 'end of string', expected: identifier")
    return LabelSelector(reqs)


def label_selector_from_match(selector: Mapping[str, Any] | None) -> LabelSelector:
    """A metav1.LabelSelector (matchLabels/matchExpressions) as a LabelSelector."""
    reqs: list[Requirement] = []
    if not selector:
        return LabelSelector(reqs)
    for k, v in (selector.get("matchLabels") or {}).items():
        reqs.append(Requirement(k, "=", (v,)))
    for expr in selector.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}[expr["operator"]]
        reqs.append(Requirement(expr["key"], op, tuple(expr.get("values") or ())))
    return LabelSelector(reqs)


# Field selectors the apiserver supports per resource (pkg/registry/*/strategy.go: *ToSelectableFields).
def _get(path: str) -> Callable[[dict[str, Any]], str]:
    parts = path.split(".")

    def getter(obj: dict[str, Any]) -> str:
        cur: Any = obj
        for p in parts:
            cur = cur.get(p) if isinstance(cur, dict) else None
        if cur is None:
            return ""
        return str(cur).lower() if isinstance(cur, bool) else str(cur)

    return getter


FIELDS: dict[str, dict[str, Callable[[dict[str, Any]], str]]] = {
    "jobs": {
        "metadata.name": _get("metadata.name"),
        "metadata.namespace": _get("metadata.namespace"),
        "status.successful": _get("status.succeeded"),
    },
    "pods": {
        "metadata.name": _get("metadata.name"),
        "metadata.namespace": _get("metadata.namespace"),
        "spec.nodeName": _get("spec.nodeName"),
        "spec.restartPolicy": _get("spec.restartPolicy"),
        "spec.schedulerName": _get("spec.schedulerName"),
        "spec.serviceAccountName": _get("spec.serviceAccountName"),
        "status.phase": _get("status.phase"),
        "status.podIP": _get("status.podIP"),
        "status.nominatedNodeName": _get("status.nominatedNodeName"),
    },
    "namespaces": {"metadata.name": _get("metadata.name"), "status.phase": _get("status.phase")},
    # pkg/registry/core/event/strategy.go ToSelectableFields (kubectl describe pod selects involvedObject.name/uid)
    "events": {
        "metadata.name": _get("metadata.name"),
        "metadata.namespace": _get("metadata.namespace"),
        **{f"involvedObject.{f}": _get(f"involvedObject.{f}")
           for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
        "reason": _get("reason"),
        "reportingComponent": _get("reportingComponent"),
        "source": lambda ev: str((ev.get("source") or {}).get("component") or ev.get("reportingComponent") or ""),
        "type": _get("type"),
    },
}


class FieldSelector:
    def __init__(self, terms: list[tuple[Callable[[dict[str, Any]], str], bool, str]]) -> None:
        self.terms = terms

    def matches(self, obj: dict[str, Any]) -> bool:
        return all((get(obj) == value) == equal for get, equal, value in self.terms)


def parse_field_selector(resource: str, text: str | None) -> FieldSelector:
    if not text or not text.strip():
        return FieldSelector([])
    supported = FIELDS.get(resource, {})
    terms: list[tuple[Callable[[dict[str, Any]], str], bool, str]] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        key, op, value = m.groups()
        if key not in supported:
            raise bad_request(f"field label not supported: {key}")
        terms.append((supported[key], op != "!=", value))
    return FieldSelector(terms)
