"""POST /explain and `bertsearch explain`: a hit's stage scores equal what /search served, the
matched terms add up to its BM25 score, and the word attributions add up to the reranker's score."""

from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient

from bertsearch.api.app import create_app
from bertsearch.api.settings import ServiceSettings

pytestmark = pytest.mark.unit

QUERY = "a programming language with garbage collection"


@pytest.fixture(scope="module")
def client(tiny_index_dir, tiny_cross_encoder_dir, tmp_path_factory):
    reranker = shutil.copytree(tiny_cross_encoder_dir, tmp_path_factory.mktemp("explain") / "reranker")
    record = {"max_length": 64, "rerank_weight": 0.5, "rerank_top_n": 5}
    (reranker / "metadata.json").write_text(json.dumps(record))
    settings = ServiceSettings(index_dir=tiny_index_dir, reranker=str(reranker), reload_seconds=0,
                               feedback_log="off")  # fmt: skip
    with TestClient(create_app(settings)) as client:
        yield client


def test_explain_matches_the_served_scores_and_ranks(client):
    served = client.post("/search", json={"query": QUERY, "top_k": 8}).json()
    assert not served["degraded"]
    for rank, hit in enumerate(served["hits"][:3], start=1):
        answer = client.post("/explain", json={"query": QUERY, "id": hit["id"]})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["final_rank"] == rank and body["final_score"] == pytest.approx(hit["score"], abs=1e-6)
        for stage, score in hit["scores"].items():
            assert body["stages"][stage]["score"] == pytest.approx(score, abs=1e-6), stage
        if "bm25" in hit["scores"]:
            matched = sum(m["score"] for m in body["matched_terms"])
            assert matched == pytest.approx(hit["scores"]["bm25"], rel=1e-4)
            lexical = body["stages"]["bm25"]
            assert lexical["rrf_contribution"] == pytest.approx(1 / (60 + lexical["rank"]))
        words = body["attributions"]
        total = sum(w["score"] for w in words["query"] + words["document"])
        gap = abs(words["convergence_delta"]) + 1e-3
        assert total == pytest.approx(words["score"] - words["reference_score"], abs=gap)
        assert words["score"] == pytest.approx(hit["scores"]["rerank"], abs=0.05)  # fp32 or bf16
        document = client.get(f"/documents/{hit['id']}").json()
        assert body["passage"] == f"{document['title']} {document['text']}"
        assert all(body["passage"][w["start"] : w["end"]] == w["word"] for w in words["document"])
        assert body["ms"]["total"] > 0 and words["steps"] == 16


def test_explain_refuses_what_it_cannot_explain(client):
    missing = client.post("/explain", json={"query": QUERY, "id": "no-such-doc"})
    assert missing.status_code == 404 and "no-such-doc" in missing.json()["detail"]
    assert client.post("/explain", json={"query": QUERY, "id": "rust", "steps": 1000}).status_code == 422
    no_retriever = {"lexical": False, "dense": False}
    off = client.post("/explain", json={"query": QUERY, "id": "rust", "stages": no_retriever})
    assert off.status_code == 422


def test_a_document_that_was_not_retrieved_is_still_explained(client):
    body = client.post("/explain", json={"query": "zebra", "id": "glacier", "stages": {"lexical": True,
                       "dense": False}}).json()  # fmt: skip
    assert body["final_rank"] is None and body["stages"] == {} and body["matched_terms"] == []
    assert body["attributions"]["document"]  # the reranker's view of the pair does not need retrieval


def test_the_command_prints_the_same_explanation(tiny_index_dir, capsys):
    from bertsearch.jobs.cli import main

    assert main(["explain", QUERY, "rust", "--index-dir", str(tiny_index_dir), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["id"] == "rust" and body["attributions"] is None  # no reranker given: no attributions
    assert {"garbag", "collect"} <= {m["term"] for m in body["matched_terms"]}  # as the analyzer stems them
