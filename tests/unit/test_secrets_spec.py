"""What a spec carries (issue 12): only the config sections a child needs, and no readable private value."""

from __future__ import annotations

import json
from pathlib import Path

import luigi

from kannon import handoff, speccrypt, storage
from kannon.backends.local import LocalExecutor
from kannon.plan import make_plan
from kannon.scheduler.specs import Specs
from tests.support.tasks import Bullet

CONFIG = {
    "secret_db": {"password": "db-Pw5-unneeded-3390"},
    "Bullet": {"sleep": "0"},
    "TaskOnKart": {"workspace_directory": "./ws"},
    "core": {"no_lock": "True"},
    "S3Config": {"aws_access_key_id": "kept-for-gokart"},
    "extra_one": {"x": "1"},
}


def test_only_the_sections_of_the_plans_families_their_bases_and_config_classes_travel() -> None:
    kept = handoff.config_for_child(CONFIG, [Bullet])
    assert "secret_db" not in kept and "extra_one" not in kept
    assert {"Bullet", "TaskOnKart", "core", "S3Config"} <= set(kept)  # family, base class, luigi's, gokart's


def test_config_sections_adds_a_section_by_name() -> None:
    assert "extra_one" in handoff.config_for_child(CONFIG, [Bullet], ["extra_one"])


def test_the_spec_the_core_writes_is_sealed_and_carries_no_unneeded_section(tmp_path: Path) -> None:
    cfg = luigi.configuration.get_config()
    cfg.add_section("secret_db")
    cfg.set("secret_db", "password", "db-Pw5-unneeded-3390")
    try:
        task = Bullet(name="sealed", workspace_directory=str(tmp_path / "ws"))
        plan = make_plan(task)
        specs = Specs(LocalExecutor(), "run", tmp_path / "run", [], None, None, [Bullet])
        spec, _ = specs.encode(plan.nodes[plan.root_id])
    finally:
        cfg.remove_section("secret_db")
    data = Path(spec.location).read_bytes()
    assert b"db-Pw5" not in data and b"sealed" not in data, "sealed: no parameter or config readable"
    doc = json.loads(speccrypt.open_sealed(data, speccrypt.run_key(tmp_path / "run")))
    assert "secret_db" not in doc["config"]


def test_a_re_attaching_master_names_the_same_spec_hash_and_seals_with_the_same_key(tmp_path: Path) -> None:
    task = Bullet(name="adopt", workspace_directory=str(tmp_path / "ws"))
    plan = make_plan(task)
    node = plan.nodes[plan.root_id]
    first, _ = Specs(LocalExecutor(), "run", tmp_path / "run", [], None, None, [Bullet]).encode(node)
    sealed = Path(first.location).read_bytes()
    again, _ = Specs(LocalExecutor(), "run", tmp_path / "run", [], None, None, [Bullet]).encode(node)
    assert again.sha256 == first.sha256, "Jobs are adopted by the spec hash: it names the content, not the nonce"
    assert Path(again.location).read_bytes() != sealed  # sealed afresh ...
    key = speccrypt.run_key(tmp_path / "run")
    assert speccrypt.open_sealed(sealed, key) == speccrypt.open_sealed(Path(again.location).read_bytes(), key)


def test_the_next_master_of_a_run_sweeps_the_spec_files_a_crashed_one_left(tmp_path: Path) -> None:
    crashed = Specs(LocalExecutor(), "run", tmp_path / "run", [], None, None, [Bullet])
    plan = make_plan(Bullet(name="left", workspace_directory=str(tmp_path / "ws")))
    spec, _ = crashed.encode(plan.nodes[plan.root_id])
    assert Path(spec.location).exists()  # the crashed master never ran its cleanup
    assert Specs(LocalExecutor(), "run", tmp_path / "run", [], None, None, [Bullet]).sweep() == 1
    assert not Path(spec.location).exists() and not list((tmp_path / "run").glob("specs*/*"))


class _InlineLocal(LocalExecutor):
    def spec_transport(self, size: int) -> str:
        return "inline"


def test_an_inline_spec_is_not_kept_past_its_launch_and_a_retry_encodes_the_same_one(tmp_path: Path) -> None:
    """The text of an inline spec travels in the Job; kept for retries, 10,000 of them held 7 MB to the run's end."""
    plan = make_plan(Bullet(name="inline", workspace_directory=str(tmp_path / "ws")))
    node = plan.nodes[plan.root_id]
    specs = Specs(_InlineLocal(), "run", tmp_path / "run", [], None, None, [Bullet])
    first, _ = specs.encode(node)
    assert first.env and specs.take(node.task_id) == first
    assert specs.take(node.task_id) is None  # nothing held once launched
    retry, _ = specs.encode(node)
    assert retry.sha256 == first.sha256 and retry.location == first.location
    key = speccrypt.run_key(tmp_path / "run")
    inline = [storage.decode_inline(spec.env["KANNON_SPEC"]) for spec in (first, retry)]
    assert speccrypt.open_sealed(inline[0], key) == speccrypt.open_sealed(inline[1], key)
