"""The rerank stage under load: one scoring worker, a time budget, failure isolation, admission
control, request limits, metrics and hostile input, on tiny models in process."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bertsearch.api.app import create_app
from bertsearch.api.scoring_worker import ScoringWorker, WorkerSettings
from bertsearch.api.serving import switch_version
from bertsearch.api.settings import ServiceSettings
from bertsearch.ranker.cross_encoder import CrossEncoder
from bertsearch.ranker.rerank_budget import Overloaded

pytestmark = pytest.mark.unit

KEY = "k" * 32
QUERY = {"query": "brewed caffeine drink", "top_k": 8, "stages": {"rerank_top_n": 8}}


class Slow:
    """A cross-encoder that takes ``seconds`` per pair (or blocks, or fails): what the tests inject."""

    def __init__(self, real: CrossEncoder, seconds: float = 0.0, fail: bool = False, block: float = 0.0):
        self.real, self.seconds, self.fail, self.block = real, seconds, fail, block
        self.max_length = real.max_length

    def score_pairs(self, pairs):
        if self.fail:
            raise RuntimeError("injected reranker failure")
        time.sleep(self.block + self.seconds * len(pairs))
        return self.real.score_pairs(pairs)


@pytest.fixture(scope="module")
def index_dir(tiny_index_dir):
    return tiny_index_dir


def service_settings(index_dir, tiny_cross_encoder_dir, tmp_path, **overrides) -> ServiceSettings:
    reranker = shutil.copytree(tiny_cross_encoder_dir, tmp_path / "reranker")
    (reranker / "metadata.json").write_text(json.dumps({"max_length": 64, "rerank_weight": 1.0}))
    return ServiceSettings(
        index_dir=index_dir, reranker=str(reranker), reload_seconds=0,
        feedback_db=tmp_path / "feedback.sqlite3",
        rerank_cache_entries=0,  # these tests time the scoring: no pair may come from the cache
        **overrides,
    )  # fmt: skip


@pytest.fixture()
def client(index_dir, tiny_cross_encoder_dir, tmp_path):
    settings = service_settings(index_dir, tiny_cross_encoder_dir, tmp_path, api_key=KEY)
    with TestClient(create_app(settings)) as client:
        yield client


def budgeted(ms: float) -> dict:
    return {**QUERY, "stages": {"rerank_top_n": 8, "rerank_budget_ms": ms}}


def worker(client) -> ScoringWorker:
    scorer = client.app.state.serving.pipeline.scorer
    assert isinstance(scorer, ScoringWorker)
    return scorer


def fused_order(client) -> list[str]:
    body = client.post("/search", json={**QUERY, "stages": {"rerank": False}}).json()
    return [hit["id"] for hit in body["hits"]]


def test_the_worker_scores_as_the_cross_encoder_does(tiny_cross_encoder_dir):
    encoder = CrossEncoder(tiny_cross_encoder_dir, precision="fp32").load()
    pairs = [("brewed drink", "coffee from roasted beans " * n) for n in range(1, 20)]
    scorer = ScoringWorker(encoder, WorkerSettings(max_batch_pairs=5))
    try:
        got = scorer.score_prefix(pairs, deadline=None)
    finally:
        scorer.close()
    assert got.cut is None
    np.testing.assert_allclose(got.scores, encoder.score_pairs(pairs), rtol=1e-4, atol=1e-5)


def test_an_unloaded_service_scores_the_whole_depth_and_says_so(client):
    body = client.post("/search", json=QUERY).json()
    assert body["rerank"]["requested"] == body["rerank"]["scored"] == 8
    assert body["rerank"]["budget_ms"] == 400.0 and 0 < body["rerank"]["spent_ms"] < 400.0
    assert body["degraded"] is False and body["degraded_reasons"] == [] and body["reranked"] is True


def test_a_budget_scores_a_prefix_and_keeps_the_rest_in_fused_order(client):
    fused = fused_order(client)
    worker(client).encoder = Slow(worker(client).encoder, seconds=0.02)
    client.post("/search", json=budgeted(2000))  # the worker learns its speed
    started = time.perf_counter()
    body = client.post("/search", json=budgeted(90)).json()
    elapsed = time.perf_counter() - started
    rerank = body["rerank"]
    assert 0 < rerank["scored"] < rerank["requested"] == 8
    assert body["degraded"] is True and body["degraded_reasons"] == ["budget"]
    assert rerank["spent_ms"] <= 90 + 100 and elapsed < 2.0  # margins for a busy machine
    hits = body["hits"]
    scored = [h for h in hits if "rerank" in h["scores"]]
    assert len(scored) == rerank["scored"]
    assert hits[: len(scored)] == scored  # scored first, then the rest in fused order
    assert [h["id"] for h in hits[len(scored) :]] == [d for d in fused if d not in {h["id"] for h in scored}]
    assert set(fused[: len(scored)]) == {h["id"] for h in scored}  # the prefix in fused order was scored
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_a_failing_reranker_serves_the_fused_order_flagged_and_counted(client, caplog):
    fused = fused_order(client)
    worker(client).encoder = Slow(worker(client).encoder, fail=True)
    with caplog.at_level(logging.ERROR):
        response = client.post("/search", json=QUERY)
    assert response.status_code == 200
    body = response.json()
    assert [h["id"] for h in body["hits"]] == fused
    assert body["degraded_reasons"] == ["failure"] and body["reranked"] is False
    assert body["rerank"]["scored"] == 0 and "injected reranker failure" in caplog.text
    metrics = client.get("/metrics").text
    assert 'bertsearch_degraded_answers_total{reason="failure"} 1.0' in metrics


def test_a_stalled_reranker_costs_the_budget_plus_the_stall_allowance_not_the_request(client):
    fused = fused_order(client)
    scorer = worker(client)
    scorer.settings = WorkerSettings(stall_ms=200)
    scorer.encoder = Slow(scorer.encoder, block=3.0)
    started = time.perf_counter()
    response = client.post("/search", json=budgeted(100))
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 and elapsed < 2.5  # not the 3 s the reranker blocks
    body = response.json()
    assert body["degraded_reasons"] == ["failure"] and [h["id"] for h in body["hits"]] == fused


def test_a_full_queue_answers_503_with_retry_after(client):
    scorer = worker(client)
    scorer.settings = WorkerSettings(max_queue_ms=50)
    scorer.encoder = Slow(scorer.encoder, seconds=0.05)
    client.post("/search", json=budgeted(2000))  # learn the speed
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: client.post("/search", json=budgeted(1500)), range(6)))
    codes = sorted(a.status_code for a in answers)
    assert 503 in codes and 200 in codes and set(codes) <= {200, 503}
    refused = next(a for a in answers if a.status_code == 503)
    assert int(refused.headers["Retry-After"]) >= 1 and "overloaded" in refused.json()["detail"]


def test_searches_past_the_concurrency_limit_answer_503_and_free_their_slot(
    index_dir, tiny_cross_encoder_dir, tmp_path
):
    settings = service_settings(index_dir, tiny_cross_encoder_dir, tmp_path, max_concurrent_searches=2)
    with TestClient(create_app(settings)) as client:
        scorer = worker(client)
        scorer.encoder = Slow(scorer.encoder, seconds=0.05)  # 8 pairs: 0.4 s a search
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: client.post("/search", json=budgeted(2000)), range(6)))
        codes = [a.status_code for a in answers]
        assert codes.count(200) >= 2 and codes.count(503) >= 1 and set(codes) <= {200, 503}
        refused = next(a for a in answers if a.status_code == 503)
        assert refused.headers["Retry-After"] == "1"
        assert "BERTSEARCH_MAX_CONCURRENT_SEARCHES" in refused.json()["detail"]
        # A refused, a rejected (422) and a finished search each give their slot back.
        assert client.post("/search", json={"query": "tea", "stages": {"lexical_k": 1000}}).status_code == 422
        with ThreadPoolExecutor(2) as pool:
            again = list(pool.map(lambda _: client.post("/search", json=budgeted(2000)), range(2)))
        assert [a.status_code for a in again] == [200, 200]
        assert all(a.json()["rerank"]["scored"] == 8 for a in again)


def test_concurrent_requests_share_batches(client):
    scorer = worker(client)
    scorer.settings = WorkerSettings(max_batch_pairs=64, max_wait_ms=20)
    scorer.encoder = Slow(scorer.encoder, seconds=0.01)  # while one batch runs, the others queue
    before = scorer.batches
    with ThreadPoolExecutor(4) as pool:
        bodies = [r.json() for r in pool.map(lambda _: client.post("/search", json=budgeted(2000)), range(4))]
    assert all(b["rerank"]["scored"] == 8 for b in bodies)
    assert scorer.batches - before < 4  # fewer batches than requests: pairs were batched together


def test_expensive_knobs_are_limited_without_the_key(client):
    response = client.post(
        "/search", json={"query": "tea", "stages": {"lexical_k": 1000, "rerank_top_n": 500}}
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "stages.lexical_k is at most 200 without an API key" in detail
    assert "rerank_top_n is at most 100" in detail
    deep = {"query": "tea", "stages": {"lexical_k": 1000}}
    keyed = client.post("/search", json=deep, headers={"X-API-Key": KEY})
    assert keyed.status_code == 200
    wrong = client.post("/search", json={"query": "tea"}, headers={"X-API-Key": "w" * 32})
    assert wrong.status_code == 403


def test_metrics_and_a_request_id_on_every_answer(client, caplog):
    with caplog.at_level(logging.INFO, logger="bertsearch.access"):
        answer = client.post("/search", json=QUERY, headers={"X-Request-ID": "req-42"})
    assert answer.headers["X-Request-ID"] == "req-42"
    assert len(client.get("/healthz").headers["X-Request-ID"]) == 32  # made up when not given
    line = next(json.loads(r.getMessage()) for r in caplog.records if r.name == "bertsearch.access")
    assert line["request_id"] == "req-42" and line["route"] == "/search" and line["status"] == 200
    text = client.get("/metrics").text
    for name in (
        'bertsearch_http_request_duration_seconds_count{method="POST",route="/search",status="200"}',
        'bertsearch_stage_duration_seconds_count{stage="rerank"}',
        "bertsearch_rerank_pairs_requested_total", "bertsearch_rerank_pairs_scored_total",
        'bertsearch_degraded_answers_total{reason="budget"}', "bertsearch_rerank_queue_pairs",
        "bertsearch_rerank_batch_pairs_bucket", "bertsearch_index_info{", "bertsearch_reranker_info{",
    ):  # fmt: skip
        assert name in text, name


@pytest.mark.parametrize("payload", ['{"query": "tea \\ud800"}', '{"query": "\\udfff"}'])
def test_a_lone_surrogate_gets_422_not_500(client, payload):
    response = client.post("/search", content=payload, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "query" in response.text and "\\ud800" in response.text or "\\udfff" in response.text


def test_an_overloaded_error_names_what_to_do():
    err = Overloaded(2.2)
    assert err.retry_after == 3 and '"rerank": false' in str(err)


def test_a_cut_job_waiting_behind_others_is_cut_for_the_queue(tiny_cross_encoder_dir):
    encoder = Slow(CrossEncoder(tiny_cross_encoder_dir, precision="fp32").load(), seconds=0.03)
    scorer = ScoringWorker(encoder, WorkerSettings(max_batch_pairs=8, max_wait_ms=0))
    pairs = [("q", f"text {n}") for n in range(8)]
    try:
        scorer.score_prefix(pairs, None)  # learn the speed: 0.24 s a batch of 8
        results = {}
        first = threading.Thread(
            target=lambda: results.setdefault("first", scorer.score_prefix(pairs * 2, None))
        )
        first.start()
        time.sleep(0.02)
        results["second"] = scorer.score_prefix(pairs, time.monotonic() + 0.3)
        first.join()
    finally:
        scorer.close()
    assert results["first"].cut is None and len(results["first"].scores) == 16
    assert results["second"].cut == "queue" and len(results["second"].scores) < 8


def test_undecodable_bytes_in_a_document_id_get_4xx(client):
    assert client.get("/documents/%ED%A0%80").status_code in (404, 422)
    assert client.get("/documents/%FF").status_code in (404, 422)


def test_a_repeated_query_reuses_its_scores_and_a_new_index_version_forgets_them(
    index_dir, tiny_cross_encoder_dir, tmp_path
):
    reranker = shutil.copytree(tiny_cross_encoder_dir, tmp_path / "reranker")
    (reranker / "metadata.json").write_text(json.dumps({"max_length": 64, "rerank_weight": 1.0}))
    settings = ServiceSettings(index_dir=index_dir, reranker=str(reranker), reload_seconds=0,
                               feedback_log="off", rerank_cache_entries=100)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        first = client.post("/search", json=QUERY).json()
        again = client.post("/search", json=QUERY).json()
        assert first["rerank"]["cached"] == 0 and first["rerank"]["scored"] == 8
        assert again["rerank"]["cached"] == again["rerank"]["scored"] == 8
        served = [(h["id"], h["score"]) for h in first["hits"]]
        assert [(h["id"], h["score"]) for h in again["hits"]] == served
        metrics = client.get("/metrics").text
        assert "bertsearch_rerank_pairs_cached_total 8.0" in metrics
        assert "bertsearch_rerank_pairs_scored_total 16.0" in metrics
        other = client.post("/search", json={**QUERY, "query": QUERY["query"] + " please"}).json()
        assert other["rerank"]["cached"] == 0  # the key is the query text, as typed
        state = client.app.state.serving
        client.app.state.serving = switch_version(state, state.snapshot)  # as a new index version does
        assert client.post("/search", json=QUERY).json()["rerank"]["cached"] == 0
