"""The HTTP query service: request validation on tiny models in-process, and a real server end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from fastapi.testclient import TestClient

from bertsearch.api.app import create_app
from bertsearch.api.settings import ServiceSettings
from bertsearch.indexer.build import build_index
from bertsearch.indexer.embedder import Embedder
from support.files import write_jsonl
from support.servers import free_port, wait_ready


@pytest.fixture(scope="module")
def tiny_client(tmp_path_factory, tiny_bert_dir, corpus_records):
    folder = tmp_path_factory.mktemp("api")
    source = write_jsonl(folder / "corpus.jsonl", corpus_records)
    build_index(source, folder / "index", Embedder(tiny_bert_dir).load(), progress=False)
    with TestClient(create_app(ServiceSettings(index_dir=folder / "index"))) as client:
        yield client


@pytest.mark.unit
def test_search_answers_in_the_documented_shape(tiny_client):
    response = tiny_client.post("/search", json={"query": "volcano magma", "top_k": 3})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "query_id", "hits", "reranked", "rerank", "degraded", "degraded_reasons", "timings_ms", "notes"
    }
    assert body["rerank"] is None and body["degraded"] is False and body["degraded_reasons"] == []
    assert body["hits"][0]["id"] == "volcano"
    assert set(body["hits"][0]) == {"id", "title", "snippet", "score", "scores", "explored"}
    assert not any(hit["explored"] for hit in body["hits"])  # exploration is off by default
    assert body["hits"][0]["title"] == "Volcanoes" and "magma" in body["hits"][0]["snippet"]
    assert body["reranked"] is False and "no trained reranker" in body["notes"][0]


@pytest.mark.unit
def test_per_request_stage_settings_apply(tiny_client):
    body = tiny_client.post("/search", json={"query": "volcano", "stages": {"dense": False}}).json()
    assert [h["id"] for h in body["hits"]] == ["volcano"]
    assert set(body["hits"][0]["scores"]) == {"bm25"} and "dense" not in body["timings_ms"]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "   "}, "query"),
        ({"query": "x" * 1001}, "query"),
        ({"query": "tea", "top_k": 0}, "top_k"),
        ({"query": "tea", "top_k": 101}, "top_k"),
        ({"query": "tea", "colour": "red"}, "colour"),
        ({"query": "tea", "stages": {"lexical_k": 0}}, "lexical_k"),
        ({"query": "tea", "stages": {"bm25": True}}, "bm25"),
        ({"query": "tea", "stages": {"rerank_weight": 1.5}}, "rerank_weight"),
        ({}, "query"),
    ],
)
def test_bad_requests_get_422_naming_the_field(tiny_client, payload, field):
    response = tiny_client.post("/search", json=payload)
    assert response.status_code == 422
    assert field in response.text


@pytest.mark.unit
def test_impossible_stage_combination_gets_422_saying_what_to_change(tiny_client):
    response = tiny_client.post(
        "/search", json={"query": "tea", "stages": {"lexical": False, "dense": False}}
    )
    assert response.status_code == 422
    assert "at least one retriever" in response.json()["detail"]


@pytest.mark.unit
def test_documents_health_and_readiness(tiny_client):
    doc = tiny_client.get("/documents/tea").json()
    assert doc == {
        "id": "tea",
        "title": "Green tea",
        "text": "Green tea is brewed from unoxidised leaves of Camellia sinensis and contains caffeine.",
        "metadata": {},
    }
    missing = tiny_client.get("/documents/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    assert tiny_client.get("/healthz").json() == {"status": "ok"}
    ready = tiny_client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["documents"] == 8


@pytest.fixture(scope="module")
def live_server(tmp_path_factory, corpus_records):
    """`bertsearch index` + `bertsearch serve` with the packaged MiniLM, on a free loopback port."""
    folder = tmp_path_factory.mktemp("live")
    source = write_jsonl(folder / "corpus.jsonl", [*corpus_records, "{broken"])
    bin_dir = os.path.dirname(sys.executable)
    index = subprocess.run(
        [f"{bin_dir}/bertsearch", "index", str(source), "--index-dir", str(folder / "index")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert index.returncode == 0, index.stderr
    assert "indexed 8 documents" in index.stdout and f"{source}:9" in index.stderr
    port = free_port()
    server = subprocess.Popen(
        [f"{bin_dir}/bertsearch", "serve", "--index-dir", str(folder / "index"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, 120, alive=lambda: server.stdout.read() if server.poll() is not None else None)
    except BaseException:
        server.kill()
        raise
    yield base
    server.terminate()
    server.wait(timeout=30)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("which animal purrs and hunts mice", "cats"),
        ("memory-safe systems programming", "rust"),
        ("how is espresso made", "coffee"),
        ("rivers of ice carving valleys", "glacier"),
    ],
)
def test_live_server_returns_the_expected_document_first(live_server, query, expected):
    response = httpx.post(f"{live_server}/search", json={"query": query, "top_k": 3}, timeout=30)
    assert response.status_code == 200
    assert response.json()["hits"][0]["id"] == expected


@pytest.mark.integration
def test_live_server_dense_alone_understands_paraphrase(live_server):
    # No word of this query occurs in the coffee document: only the MiniLM embedding can find it.
    body = {"query": "a hot drink made from roasted seeds", "top_k": 1, "stages": {"lexical": False}}
    response = httpx.post(f"{live_server}/search", json=body, timeout=30)
    assert response.json()["hits"][0]["id"] == "coffee"


@pytest.mark.integration
def test_live_server_rejects_bad_requests_and_serves_docs(live_server):
    assert httpx.post(f"{live_server}/search", json={"query": ""}, timeout=10).status_code == 422
    assert (
        httpx.post(f"{live_server}/search", json={"query": "x", "top_k": 1000}, timeout=10).status_code == 422
    )
    assert httpx.post(f"{live_server}/search", content=b"not json", timeout=10).status_code == 422
    assert httpx.get(f"{live_server}/documents/missing", timeout=10).status_code == 404
    assert httpx.get(f"{live_server}/docs", timeout=10).status_code == 200
    assert "/search" in httpx.get(f"{live_server}/openapi.json", timeout=10).json()["paths"]


@pytest.mark.integration
def test_cli_search_json_is_the_http_answer(live_server, tmp_path_factory):
    index_dir = next(tmp_path_factory.getbasetemp().glob("live*/index"))
    cli = subprocess.run(
        [
            f"{os.path.dirname(sys.executable)}/bertsearch",
            "search",
            "espresso",
            "--index-dir",
            str(index_dir),
            "--top-k",
            "4",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    from_cli = json.loads(cli.stdout)
    from_http = httpx.post(f"{live_server}/search", json={"query": "espresso", "top_k": 4}, timeout=30).json()
    assert set(from_cli) == set(from_http)
    assert [h["id"] for h in from_cli["hits"]] == [h["id"] for h in from_http["hits"]]
    assert [h["scores"]["bm25"] for h in from_cli["hits"] if "bm25" in h["scores"]] == pytest.approx(
        [h["scores"]["bm25"] for h in from_http["hits"] if "bm25" in h["scores"]]
    )


@pytest.mark.unit
def test_a_tuned_reranker_blends_by_its_own_weight_unless_the_request_sets_one(
    tmp_path, tiny_bert_dir, tiny_cross_encoder_dir, corpus_records
):
    import shutil

    reranker = shutil.copytree(tiny_cross_encoder_dir, tmp_path / "reranker")
    (reranker / "metadata.json").write_text(
        json.dumps({"max_length": 64, "rerank_weight": 0.3, "rerank_top_n": 3})
    )
    source = write_jsonl(tmp_path / "corpus.jsonl", corpus_records)
    build_index(source, tmp_path / "index", Embedder(tiny_bert_dir).load(), progress=False)
    settings = ServiceSettings(index_dir=tmp_path / "index", reranker=str(reranker))
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz").json()
        assert (ready["reranker_max_length"], ready["rerank_weight"], ready["rerank_top_n"]) == (64, 0.3, 3)
        query = {"query": "brewed caffeine drink", "top_k": 5}
        blended = client.post("/search", json=query).json()
        alone = client.post(
            "/search", json={**query, "stages": {"rerank_weight": 1.0, "rerank_top_n": 5}}
        ).json()
    assert blended["reranked"] and alone["reranked"]
    # the model's own depth: its 3 best fused candidates are reranked, the next keep their fused order
    assert [("rerank" in hit["scores"]) for hit in blended["hits"]] == [True] * 3 + [False] * 2
    assert all("rerank" in hit["scores"] for hit in alone["hits"])
    assert all(hit["score"] == hit["scores"]["blend"] for hit in blended["hits"][:3])
    for hit in alone["hits"]:
        assert "blend" not in hit["scores"] and hit["score"] == hit["scores"]["rerank"]



@pytest.mark.unit
def test_a_model_serves_its_unseen_corpus_point_on_a_corpus_it_was_not_trained_on(
    tmp_path, tiny_bert_dir, tiny_cross_encoder_dir, corpus_records
):
    import shutil

    from bertsearch.indexer.snapshot import IndexSnapshot

    source = write_jsonl(tmp_path / "corpus.jsonl", corpus_records)
    build_index(source, tmp_path / "index", Embedder(tiny_bert_dir).load(), progress=False)
    own = IndexSnapshot.open(tmp_path / "index").manifest.corpus()
    reranker = shutil.copytree(tiny_cross_encoder_dir, tmp_path / "reranker")
    unseen = {"rerank_top_n": 2, "rerank_weight": 0.2, "chosen_by": "leave-one-corpus-out"}
    elsewhere = {"source": "/elsewhere/corpus.jsonl", "digest": "0" * 64}
    for corpus, expected in ((elsewhere, ("unseen", 2, 0.2)), (own, ("in-domain", 3, 0.3))):
        record = {"rerank_weight": 0.3, "rerank_top_n": 3, "unseen_corpus": unseen,
                  "data": {"corpora": [corpus]}}
        (reranker / "metadata.json").write_text(json.dumps(record))
        settings = ServiceSettings(index_dir=tmp_path / "index", reranker=str(reranker))
        with TestClient(create_app(settings)) as client:
            ready = client.get("/readyz").json()
            answer = client.post("/search", json={"query": "brewed caffeine drink", "top_k": 5}).json()
        assert (ready["reranker_domain"], ready["rerank_top_n"], ready["rerank_weight"]) == expected
        assert answer["rerank"]["requested"] == expected[1]
