"""The query service on Ray Serve, on a local Ray: two service replicas and a batching reranker
deployment answer as the plain server does, and a killed replica costs no request beyond a retry."""

from __future__ import annotations

import json
import shutil
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from bertsearch.api.app import create_app
from bertsearch.api.settings import ServiceSettings
from support.servers import free_port, wait_ready

pytestmark = pytest.mark.integration

QUERIES = ["brewed caffeine drink", "purring pets", "memory safe language", "ice rivers"]


@pytest.fixture(scope="module")
def settings(tmp_path_factory, tiny_index_dir, tiny_cross_encoder_dir) -> ServiceSettings:
    folder = tmp_path_factory.mktemp("serve")
    reranker = shutil.copytree(tiny_cross_encoder_dir, folder / "reranker")
    (reranker / "metadata.json").write_text(json.dumps({"max_length": 64, "rerank_weight": 1.0}))
    # no budget: both servers score the whole depth, so their answers can be compared
    return ServiceSettings(
        index_dir=tiny_index_dir, reranker=str(reranker), reload_seconds=0, rerank_budget_ms=0,
        feedback_db=folder / "feedback.sqlite3",
    )


@pytest.fixture(scope="module")
def serve_url(settings):
    import ray
    from ray import serve

    from bertsearch.jobs.serving.ray_serve import ServeLayout, run

    if ray.is_initialized():  # left by another module: ours needs its own resources
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = free_port()
    try:
        run(settings, ServeLayout(replicas=2, ingress_cpus=0.25, reranker_cpus=0.5), host="127.0.0.1",
            port=port, blocking=False)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, 120)
        yield url
    finally:
        serve.shutdown()
        ray.shutdown()


def _answer(body: dict) -> list[tuple[str, float]]:
    return [(hit["id"], hit["scores"].get("rerank")) for hit in body["hits"]]


def test_ray_serve_answers_as_the_plain_server(settings, serve_url):
    with TestClient(create_app(settings)) as plain:
        for query in QUERIES:
            request = {"query": query, "top_k": 6}
            served = httpx.post(f"{serve_url}/search", json=request, timeout=30).json()
            local = plain.post("/search", json=request).json()
            assert [i for i, _ in _answer(served)] == [i for i, _ in _answer(local)]
            assert [s for _, s in _answer(served)] == pytest.approx([s for _, s in _answer(local)], abs=2e-2)
            assert served["rerank"]["scored"] == served["rerank"]["requested"] > 0


def test_a_killed_replica_costs_no_request_beyond_a_retry(serve_url):
    import ray

    def replicas() -> list[dict]:
        return [
            actor for actor in ray.util.list_named_actors(all_namespaces=True)
            if "SearchIngress" in actor["name"] and actor["name"].startswith("SERVE_REPLICA")
        ]  # fmt: skip

    before = replicas()
    assert len(before) == 2
    victim = ray.get_actor(before[0]["name"], namespace=before[0]["namespace"])
    ray.kill(victim, no_restart=True)
    retries, answered = 0, 0
    for n in range(20):
        for attempt in range(2):  # one retry, as a client behind a load balancer would
            try:
                response = httpx.post(f"{serve_url}/search", json={"query": QUERIES[n % 4]}, timeout=30)
                if response.status_code == 200:
                    answered += 1
                    break
            except httpx.TransportError:
                pass
            retries += attempt == 0
    assert answered == 20, f"{20 - answered} requests failed even after a retry ({retries} retried)"
    deadline = time.monotonic() + 60  # and Serve replaces the killed replica
    while {a["name"] for a in replicas()} == {a["name"] for a in before} or len(replicas()) != 2:
        assert time.monotonic() < deadline, "the killed replica was not replaced in 60 s"
        time.sleep(1)
