"""The config a child gets may refer to environment variables (luigi's ``${NAME}`` interpolation); the child
resolves it, so those names travel to it (as secrets) without being listed in env_to_inherit."""

from __future__ import annotations

from luigi.configuration.cfg_parser import LuigiConfigParser

from kannon.scheduler.env import config_env_names


def raw(text: str) -> dict[str, dict[str, str]]:
    cfg = LuigiConfigParser()
    cfg.read_string(text)
    return {s: dict(cfg.items(s, raw=True)) for s in cfg.sections()}


def test_names_referenced_anywhere_in_the_config_are_found_once() -> None:
    config = raw("[db]\nurl = postgres://u:${DB_PASSWORD}@h/${DB_NAME}\n[other]\nx = ${DB_NAME}\nplain = 1\n")
    assert config_env_names(config) == ["DB_NAME", "DB_PASSWORD"]


def test_a_reference_to_an_unset_variable_is_listed_without_resolving_it() -> None:
    assert config_env_names(raw("[s]\nv = ${KANNON_SURELY_UNSET_VARIABLE}\n")) == ["KANNON_SURELY_UNSET_VARIABLE"]


def test_only_the_sections_a_child_gets_ask_for_variables() -> None:
    # run.py passes handoff.config_for_child's result: a section left out of the spec asks for nothing
    assert config_env_names({}) == []
