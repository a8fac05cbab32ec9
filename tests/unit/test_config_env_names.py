"""The master's luigi config may refer to environment variables (luigi's ``${NAME}`` interpolation); the child
resolves the same config, so those names travel to it (as secrets) without being listed in env_to_inherit."""

from __future__ import annotations

from luigi.configuration.cfg_parser import LuigiConfigParser

from kannon.scheduler.env import config_env_names


def test_names_referenced_anywhere_in_the_config_are_found_once() -> None:
    cfg = LuigiConfigParser()
    cfg.read_string("[db]\nurl = postgres://u:${DB_PASSWORD}@h/${DB_NAME}\n[other]\nx = ${DB_NAME}\nplain = 1\n")
    assert config_env_names(cfg) == ["DB_NAME", "DB_PASSWORD"]


def test_a_reference_to_an_unset_variable_is_listed_and_the_config_is_not_resolved() -> None:
    cfg = LuigiConfigParser()
    cfg.read_string("[s]\nv = ${KANNON_SURELY_UNSET_VARIABLE}\n")
    assert config_env_names(cfg) == ["KANNON_SURELY_UNSET_VARIABLE"]  # raw: no InterpolationMissingEnvvarError


def test_a_parser_without_raw_access_gives_nothing() -> None:
    assert config_env_names(object()) == []
