"""The reranker registry: immutable versions, the served pointer, promotion and rollback."""

from __future__ import annotations

import json
import shutil

import pytest

from bertsearch.ranker.model_dir import ModelRecord
from bertsearch.ranker.registry import RegistryError, RerankerRegistry

pytestmark = pytest.mark.unit


@pytest.fixture()
def model_dir(tmp_path, tiny_cross_encoder_dir):
    folder = tmp_path / "trained"
    shutil.copytree(tiny_cross_encoder_dir, folder)
    provenance = {"data": {"source": {"mode": "feedback"}}, "best_epoch": 1}
    record = ModelRecord(base_model="tiny", max_length=64, rerank_weight=0.4, rerank_top_n=8,
                         provenance=provenance)  # fmt: skip
    record.write(folder)
    return folder


def accept(registry: RerankerRegistry, name: str) -> None:
    registry.record_gate(name, {"accepted": True, "verdict": "accepted: test"})


def test_an_added_version_is_a_copy_with_a_manifest_and_is_not_served(tmp_path, model_dir):
    registry = RerankerRegistry(tmp_path / "registry")
    version = registry.add(model_dir, note="first")
    (model_dir / "metadata.json").unlink()  # the version does not depend on the source folder
    assert (version.path / "metadata.json").is_file() and (version.path / "model.safetensors").is_file()
    assert version.manifest["base_model"] == "tiny" and version.manifest["parent"] is None
    assert version.manifest["training_data"] == {"source": {"mode": "feedback"}}
    assert version.manifest["rerank_weight"] == 0.4 and version.manifest["note"] == "first"
    assert registry.current() is None and version.gate is None
    assert RerankerRegistry.holds(registry.root) and not RerankerRegistry.holds(version.path)


def test_promotion_needs_an_accepting_gate_or_force(tmp_path, model_dir):
    registry = RerankerRegistry(tmp_path / "registry")
    name = registry.add(model_dir).name
    with pytest.raises(RegistryError, match="has not passed the promotion gate"):
        registry.promote(name)
    registry.record_gate(name, {"accepted": False, "verdict": "refused: worse"})
    with pytest.raises(RegistryError):
        registry.promote(name)
    registry.promote(name, forced=True, reason="refused: worse")
    assert registry.current_name() == name
    (move,) = registry.history()
    assert (move["action"], move["version"], move["previous"]) == ("promote", name, None)
    assert move["forced"] is True


def test_rollback_walks_back_the_promotions_to_hybrid(tmp_path, model_dir):
    registry = RerankerRegistry(tmp_path / "registry")
    first = registry.add(model_dir).name
    accept(registry, first)
    registry.promote(first)
    second = registry.add(model_dir)
    assert second.manifest["parent"] == first  # made while the first was served
    accept(registry, second.name)
    registry.promote(second.name)
    assert registry.rollback() == first and registry.current_name() == first
    assert registry.rollback() is None and registry.current() is None
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback()
    actions = [(m["action"], m["version"]) for m in registry.history()]
    assert actions == [("promote", first), ("promote", second.name), ("rollback", first), ("rollback", None)]
    assert [v.name for v in registry.versions()] == [first, second.name]  # versions are never removed


def test_unknown_versions_and_untrained_folders_are_refused_with_their_names(tmp_path, tiny_bert_dir):
    registry = RerankerRegistry(tmp_path / "registry")
    with pytest.raises(RegistryError, match="no reranker version 'v1'"):
        registry.get("v1")
    with pytest.raises(Exception, match="metadata.json"):
        registry.add(tiny_bert_dir)
    assert not (tmp_path / "registry" / "versions").exists() or registry.versions() == []
    assert json.loads(json.dumps(registry.history())) == []
