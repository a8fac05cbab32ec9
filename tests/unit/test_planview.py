from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kannon.planview import FORMATS, render_plan, summary
from kannon.result import Placement


@dataclass(frozen=True)
class N:
    task_id: str
    family: str
    params: str
    placement: Placement | str
    deps: tuple[str, ...] = ()


@dataclass
class P:
    root_id: str
    nodes: dict[str, N] = field(default_factory=dict)


def tid(name: str) -> str:
    return (name.encode().hex() + "0" * 32)[:32]


def diamond() -> P:
    a = N(tid("a"), "TaskA", "", Placement.COMPLETE)
    b0 = N(tid("b0"), "TaskB", "param=b0", Placement.BULLET, (a.task_id,))
    b1 = N(tid("b1"), "TaskB", "param=b1", Placement.BULLET, (a.task_id,))
    d = N(tid("d"), "TaskD", "", Placement.MASTER, (b0.task_id, b1.task_id))
    return P(d.task_id, {n.task_id: n for n in (d, b0, a, b1)})


def test_text_is_a_tree_from_the_root_with_shared_nodes_expanded_once():
    out = render_plan(diamond(), "text")
    lines = out.splitlines()
    assert lines[0] == "Plan: 4 tasks (2 bullet, 1 master, 1 already complete)"
    assert lines[1] == f"TaskD [{tid('d')[:8]}] master"
    assert lines[2] == f"├── TaskB(param=b0) [{tid('b0')[:8]}] bullet"
    assert lines[3] == f"│   └── TaskA [{tid('a')[:8]}] complete"
    assert lines[4] == f"└── TaskB(param=b1) [{tid('b1')[:8]}] bullet"
    assert lines[5] == f"    └── TaskA [{tid('a')[:8]}] complete"
    assert len(lines) == 6


def test_text_references_an_already_expanded_subtree_instead_of_repeating_it():
    p = diamond()
    top = N(tid("top"), "Top", "", Placement.MASTER, (p.root_id, tid("b0")))
    p.nodes[top.task_id] = top
    p.root_id = top.task_id
    out = render_plan(p, "text")
    assert f"└── TaskB(param=b0) [{tid('b0')[:8]}] bullet (dependencies shown above)" in out
    assert out.count("TaskA") == 2  # only under the first expansion of each TaskB


def test_text_lists_nodes_not_reachable_from_the_root():
    p = diamond()
    stray = N(tid("x"), "Stray", "k=1", "bullet")
    p.nodes[stray.task_id] = stray
    out = render_plan(p, "text")
    assert "not reachable from the root (1):" in out
    assert f"  Stray(k=1) [{tid('x')[:8]}] bullet" in out


def test_text_of_a_long_chain_does_not_recurse():
    nodes: dict[str, N] = {}
    prev: tuple[str, ...] = ()
    for i in range(5000):
        n = N(tid(f"c{i}"), "Chain", f"i={i}", Placement.BULLET, prev)
        nodes[n.task_id] = n
        prev = (n.task_id,)
    out = render_plan(P(prev[0], nodes), "text")
    assert out.count("Chain(") == 5000


def _dot_unquote(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), s)


def test_dot_escapes_quotes_and_backslashes_in_params():
    p = diamond()
    evil = N(tid("e"), "Evil", 'path="C:\\x" } digraph { a', Placement.BULLET, (tid("a"),))
    p.nodes[evil.task_id] = evil
    out = render_plan(p, "dot")
    assert out.startswith("digraph kannon_plan {\n") and out.rstrip().endswith("}")
    # every double-quoted string is well formed: unescaping the labels gives the original text back
    quoted = re.findall(r'"((?:[^"\\]|\\.)*)"', out)
    labels = [_dot_unquote(q) for q in quoted]
    assert f'Evil(path="C:\\x" }} digraph {{ a)\n{tid("e")[:8]} · bullet' in labels
    # nothing outside quoted strings contains the injected brace/keyword
    outside = re.sub(r'"((?:[^"\\]|\\.)*)"', '""', out)
    assert outside.count("digraph") == 1
    assert outside.count("{") == 1 and outside.count("}") == 1
    assert f'"{tid("a")}" -> "{tid("e")}";' in out


def test_dot_has_every_node_and_edge_coloured_by_placement():
    out = render_plan(diamond(), "dot")
    for name in ("a", "b0", "b1", "d"):
        assert out.count(f'"{tid(name)}" [') == 1
    assert f'"{tid("b0")}" -> "{tid("d")}";' in out
    assert f'"{tid("a")}" -> "{tid("b1")}";' in out
    assert out.count(" -> ") == 4
    assert 'fillcolor="#e2e3e5"' in out  # the complete node


def test_mermaid_escapes_label_text():
    p = diamond()
    evil = N(tid("e"), "Evil", 'x="<b>"#1', Placement.BULLET, (tid("a"),))
    p.nodes[evil.task_id] = evil
    out = render_plan(p, "mermaid")
    line = next(x for x in out.splitlines() if "Evil" in x)
    assert line == f'  n4["Evil(x=#quot;#lt;b#gt;#quot;#35;1) [{tid("e")[:8]}]"]:::bullet'
    assert out.startswith("flowchart LR\n")
    assert "  n2 --> n1" in out  # TaskA (discovery index 2) feeds TaskB b0 (index 1)
    assert out.count(" --> ") == 5


def test_json_round_trips_every_field():
    p = diamond()
    d = json.loads(render_plan(p, "json"))
    assert d["schema"] == 1
    assert d["root_id"] == p.root_id
    assert [n["task_id"] for n in d["nodes"]] == list(p.nodes)
    b0 = next(n for n in d["nodes"] if n["task_id"] == tid("b0"))
    assert b0 == {
        "task_id": tid("b0"),
        "family": "TaskB",
        "params": "param=b0",
        "placement": "bullet",
        "deps": [tid("a")],
    }


def test_unknown_format_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="text, dot, mermaid, json"):
        render_plan(diamond(), "svg")


def test_summary_counts_unknown_placements_too():
    p = diamond()
    p.nodes["z" * 32] = N("z" * 32, "Odd", "", "elsewhere")
    assert summary(p) == "Plan: 5 tasks (2 bullet, 1 master, 1 already complete, 1 elsewhere)"


@st.composite
def dags(draw: st.DrawFn) -> P:
    n = draw(st.integers(min_value=1, max_value=25))
    nodes: dict[str, N] = {}
    ids = [tid(f"t{i}") for i in range(n)]
    for i in range(n):
        deps = draw(st.lists(st.sampled_from(ids[:i]), unique=True, max_size=4)) if i else []
        params = draw(st.text(max_size=12))
        placement = draw(st.sampled_from(list(Placement)))
        nodes[ids[i]] = N(ids[i], f"F{i}", params, placement, tuple(deps))
    # a root that needs every sink so everything is reachable
    needed = {d for node in nodes.values() for d in node.deps}
    root = N(tid("root"), "Root", "", Placement.MASTER, tuple(i for i in ids if i not in needed))
    nodes[root.task_id] = root
    return P(root.task_id, nodes)


@settings(max_examples=60, deadline=None)
@given(dags())
def test_every_format_shows_every_node_of_random_dags(plan: P):
    text = render_plan(plan, "text")
    assert "not reachable" not in text
    for node in plan.nodes.values():
        assert f"[{node.task_id[:8]}]" in text
    data = json.loads(render_plan(plan, "json"))
    assert {n["task_id"] for n in data["nodes"]} == set(plan.nodes)
    edges = sum(len(n.deps) for n in plan.nodes.values())
    assert render_plan(plan, "dot").count('" -> "') == edges
    mermaid = render_plan(plan, "mermaid")
    assert mermaid.count(" --> ") == edges
    for line in mermaid.splitlines()[1:]:
        if '["' in line:  # label lines: exactly the two delimiting quotes survive escaping
            assert line.count('"') == 2
    assert set(FORMATS) == {"text", "dot", "mermaid", "json"}


def test_params_with_line_breaks_stay_on_one_line_in_every_format():
    p = diamond()
    odd = N(tid("o"), "Odd", "a=1\nb=2\u2028c=3\x0c", Placement.BULLET, (tid("a"),))
    p.nodes[odd.task_id] = odd
    text = render_plan(p, "text")
    assert f"  Odd(a=1 b=2 c=3 ) [{tid('o')[:8]}] bullet" in text.splitlines()
    mermaid = render_plan(p, "mermaid")
    assert any(line.startswith('  n4["Odd(a=1 b=2 c=3 )') for line in mermaid.splitlines())
    dot = render_plan(p, "dot")
    assert '"Odd(a=1 b=2 c=3 )\\n' in dot


def test_text_and_json_show_each_bullets_hints_but_never_env_values():
    from kannon.hints import Hints

    @dataclass(frozen=True)
    class HN:
        task_id: str
        family: str
        params: str
        placement: Placement
        deps: tuple[str, ...]
        hints: Hints

    b = HN(tid("b"), "TaskB", "", Placement.BULLET, (),
           Hints(memory="256Mi", cpu=2, timeout=600, env={"TOKEN": "s3cret"}))  # fmt: skip
    p = P(b.task_id, {b.task_id: b})
    out = render_plan(p, "text")
    assert out.splitlines()[1] == f"TaskB [{tid('b')[:8]}] bullet {{cpu=2 memory=256Mi timeout=600s env=TOKEN}}"
    assert "s3cret" not in out and "s3cret" not in render_plan(p, "json")
    assert json.loads(render_plan(p, "json"))["nodes"][0]["hints"] == "cpu=2 memory=256Mi timeout=600s env=TOKEN"
