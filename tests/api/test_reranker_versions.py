"""The service serves a reranker registry's CURRENT version and takes up a promoted or rolled-back
version without a restart; a version it cannot load is reported and the old one keeps serving."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from bertsearch.api.app import create_app
from bertsearch.api.feedback.sqlite_log import SQLiteLog
from bertsearch.api.settings import ServiceSettings
from bertsearch.ranker.model_dir import ModelRecord
from bertsearch.ranker.registry import RerankerRegistry

pytestmark = pytest.mark.unit


@pytest.fixture()
def registry(tmp_path, tiny_cross_encoder_dir) -> RerankerRegistry:
    registry = RerankerRegistry(tmp_path / "rerankers")
    registry.root.mkdir()
    return registry


def add(registry: RerankerRegistry, source, tmp_path, name: str) -> str:
    folder = shutil.copytree(source, tmp_path / name)
    ModelRecord(base_model="tiny", max_length=64, rerank_weight=1.0, rerank_top_n=5).write(folder)
    version = registry.add(folder).name
    registry.promote(version, forced=True, reason="test")
    return version


def search(client: TestClient) -> dict:
    response = client.post("/search", json={"query": "programming language", "top_k": 5})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_service_switches_reranker_versions_without_a_restart(
    tiny_index_dir, registry, tiny_cross_encoder_dir, tmp_path
):
    feedback = tmp_path / "feedback.sqlite3"
    settings = ServiceSettings(index_dir=tiny_index_dir, reranker=str(registry.root), reload_seconds=0,
                               feedback_db=feedback)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        watcher = client.app.state.watcher
        ready = client.get("/readyz").json()
        assert ready["reranker_version"] is None and ready["stage"].startswith("hybrid")
        assert all("rerank" not in hit["scores"] for hit in search(client)["hits"])

        first = add(registry, tiny_cross_encoder_dir, tmp_path, "first")
        assert watcher.check() is True
        ready = client.get("/readyz").json()
        assert (ready["reranker_version"], ready["stage"]) == (first, "reranking")
        assert ready["reranker_max_length"] == 64
        answer = search(client)
        assert answer["rerank"]["scored"] == 5 and all("rerank" in hit["scores"] for hit in answer["hits"])

        # a version that cannot be loaded is reported; the served one stays
        broken = registry.add(registry.get(first).path).name
        for weights in registry.get(broken).path.glob("*.safetensors"):
            weights.unlink()
        registry.promote(broken, forced=True)
        assert watcher.check() is False
        ready = client.get("/readyz").json()
        assert ready["reranker_version"] == first and broken in ready["version_error"]
        assert search(client)["rerank"]["scored"] == 5

        registry.rollback()  # back to the first version: served again, the error cleared
        assert watcher.check() is False  # already served
        registry.rollback()  # and to no reranker at all
        assert watcher.check() is True
        ready = client.get("/readyz").json()
        assert ready["reranker_version"] is None and "version_error" not in ready
        assert all("rerank" not in hit["scores"] for hit in search(client)["hits"])
    log = SQLiteLog(feedback)
    served_by = [q.reranker for q in log.queries()]
    log.close()
    assert served_by == [None, first, first, None]  # each answer logged with the version that ranked it
