"""kannon.pack.protocol: what a pack's runner is handed, and how its log is read back."""

from __future__ import annotations

import json

import pytest

from kannon.pack.protocol import (
    PACK_ENV,
    Member,
    MemberEnd,
    PackError,
    decode,
    encode,
    end_line,
    member_line,
    parse_end,
    parse_line,
    split,
)

ARGS = ("run-task", "--spec", "env:KANNON_SPEC", "--task-id", "abc", "--sha256", "0" * 64)


def test_the_variable_name() -> None:
    assert PACK_ENV == "KANNON_PACK"


def test_members_round_trip_with_their_own_environment() -> None:
    members = [Member(args=ARGS, env={"KANNON_SPEC": "x" * 1000, "A": "é ☃ \n quoted \""}),
               Member(args=("run-task", "--help"), env={})]  # fmt: skip
    text = encode(members)
    assert "\n" not in text and text.isascii()
    assert decode(text) == members
    assert json.loads(text) == {"v": 1, "members": [{"args": list(ARGS), "env": dict(members[0].env)},
                                                    {"args": ["run-task", "--help"], "env": {}}]}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "not JSON"),
        ("{", "not JSON"),
        ("[" * 100_000, "not JSON"),
        ("[]", "not a JSON object"),
        ('"x"', "not a JSON object"),
        ('{"members": [{"args": ["run-task"], "env": {}}]}', "version None"),
        ('{"v": 2, "members": [{"args": ["run-task"], "env": {}}]}', "version 2"),
        ('{"v": true, "members": [{"args": ["run-task"], "env": {}}]}', "version True"),
        ('{"v": "1", "members": [{"args": ["run-task"], "env": {}}]}', "version '1'"),
        ('{"v": 1}', "'members'"),
        ('{"v": 1, "members": []}', "'members'"),
        ('{"v": 1, "members": {}}', "'members'"),
        ('{"v": 1, "members": ["run-task"]}', "member 0 is not an object"),
        ('{"v": 1, "members": [{"env": {}}]}', "member 0: 'args'"),
        ('{"v": 1, "members": [{"args": [], "env": {}}]}', "member 0: 'args'"),
        ('{"v": 1, "members": [{"args": "run-task", "env": {}}]}', "member 0: 'args'"),
        ('{"v": 1, "members": [{"args": ["run-task", 1], "env": {}}]}', "member 0: 'args'"),
        ('{"v": 1, "members": [{"args": ["run-task", null], "env": {}}]}', "member 0: 'args'"),
        ('{"v": 1, "members": [{"args": ["a"], "env": {}}, {"args": ["a"]}]}', "member 1: 'env'"),
        ('{"v": 1, "members": [{"args": ["a"], "env": []}]}', "member 0: 'env'"),
        ('{"v": 1, "members": [{"args": ["a"], "env": {"A": 1}}]}', "member 0: 'env'"),
        ('{"v": 1, "members": [{"args": ["a"], "env": {"A": null}}]}', "member 0: 'env'"),
        ('{"v": 1, "members": [{"args": ["a"], "env": {"": "x"}}]}', "not an environment variable"),
        ('{"v": 1, "members": [{"args": ["a"], "env": {"A=B": "x"}}]}', "not an environment variable"),
        ('{"v": 1, "members": [{"args": ["a"], "env": {"A": "x\\u0000"}}]}', "not an environment variable"),
    ],
)
def test_anything_malformed_is_one_line_pack_error(text: str, says: str) -> None:
    with pytest.raises(PackError) as e:
        decode(text)
    assert isinstance(e.value, ValueError)
    assert says in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_member_line_prefixes_and_ends_each_line() -> None:
    assert member_line(0, b"hello\n") == b"[0] hello\n"
    assert member_line(12, b"no newline") == b"[12] no newline\n"
    assert member_line(3, b"") == b"[3] \n"
    assert member_line(3, b"\n") == b"[3] \n"
    assert member_line(1, b"a\r\n") == b"[1] a\r\n"
    assert member_line(1, b"two\nlines\n") == b"[1] two\n[1] lines\n"  # never a piece without its prefix


def test_end_line_is_one_ascii_line_that_parses_back() -> None:
    record = '{"kannon_result":1,"task":"t\\n"}\nwith a newline and ☃'
    line = end_line(2, 137, record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and line.isascii()
    text = line.decode()
    assert text.startswith("kannon-pack: member 2 ended {")
    assert parse_end(text) == (2, MemberEnd(code=137, record=record))
    assert parse_end(text.rstrip("\n")) == (2, MemberEnd(code=137, record=record))
    assert parse_end(end_line(0, 0, None).decode()) == (0, MemberEnd(code=0, record=None))
    assert parse_line(text) == (None, text)


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("[0] hello", (0, "hello")),
        ("[7] ", (7, "")),
        ("[12] [3] nested", (12, "[3] nested")),
        ('[0] kannon-pack: member 0 ended {"code": 0, "record": null}', (0, 'kannon-pack: member 0 ended {"code": 0, '
                                                                           '"record": null}')),
        ("[1] ☃ é \u2028", (1, "☃ é \u2028")),
        ("[0] line\n", (0, "line\n")),
        ("", (None, "")),
        ("[12]", (None, "[12]")),
        ("[12]no space", (None, "[12]no space")),
        ("[x] text", (None, "[x] text")),
        ("[] text", (None, "[] text")),
        ("[-1] text", (None, "[-1] text")),
        ("[+1] text", (None, "[+1] text")),
        ("[01] text", (None, "[01] text")),
        ("[ 1] text", (None, "[ 1] text")),
        ("[١] arabic-indic digit", (None, "[١] arabic-indic digit")),
        (" [0] indented", (None, " [0] indented")),
        ("kannon run-pack: a runner line", (None, "kannon run-pack: a runner line")),
        ("Traceback (most recent call last):", (None, "Traceback (most recent call last):")),
    ],
)
def test_parse_line(line: str, parsed: tuple[int | None, str]) -> None:
    assert parse_line(line) == parsed


@pytest.mark.parametrize(
    "line",
    [
        '[0] kannon-pack: member 0 ended {"code": 0, "record": null}',  # a member's text: stays the member's
        'kannon-pack: member 0 ended {"code": 0, "record": null',  # not JSON
        'kannon-pack: member 0 ended {"code": "0", "record": null}',
        'kannon-pack: member 0 ended {"code": true, "record": null}',
        'kannon-pack: member 0 ended {"code": 0.5, "record": null}',
        'kannon-pack: member 0 ended {"code": 0, "record": 5}',
        'kannon-pack: member 0 ended {"record": null}',
        'kannon-pack: member 01 ended {"code": 0, "record": null}',
        'kannon-pack: member x ended {"code": 0, "record": null}',
        'kannon-pack: member 0 ended {"code": 0, "record": null} trailing',
        ' kannon-pack: member 0 ended {"code": 0, "record": null}',
        'kannon-pack: member 0 ended {"code": 0,\n "record": null}',
        "kannon-pack: member 0 ended",
        "",
    ],
)
def test_parse_end_refuses_anything_but_a_marker(line: str) -> None:
    assert parse_end(line) is None


def test_split_sorts_a_pack_log() -> None:
    log = b"".join([
        b"kannon-pack: starting\n",
        member_line(0, b"zero one"),
        member_line(1, b'kannon-pack: member 0 ended {"code": 99, "record": null}'),
        member_line(0, b""),
        member_line(1, "☃".encode()),
        end_line(1, 6, '{"x": 1}'),
        member_line(0, b"[1] zero two"),
        member_line(5, b"an index the pack does not have"),
        end_line(5, 0, None),
        b"[12]no space\n",
        end_line(0, 0, None),
        b"garbage [0] \n",
    ]).decode()  # fmt: skip
    lines = log.split("\n")[:-1]
    members, ends, other = split(lines, 2)
    assert members == [["zero one", "", "[1] zero two"],
                       ['kannon-pack: member 0 ended {"code": 99, "record": null}', "☃"]]  # fmt: skip
    assert ends == {0: MemberEnd(0, None), 1: MemberEnd(6, '{"x": 1}')}
    assert other == ["kannon-pack: starting", "[5] an index the pack does not have",
                     'kannon-pack: member 5 ended {"code": 0, "record": null}', "[12]no space",
                     "garbage [0] "]  # fmt: skip


def test_split_of_nothing() -> None:
    assert split([], 3) == ([[], [], []], {}, [])
    assert split(["x"], 0) == ([], {}, ["x"])
