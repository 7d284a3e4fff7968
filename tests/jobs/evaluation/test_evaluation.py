"""Offline evaluation: hand-computed metrics, significance on identical runs, a full report on tiny models."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import replace

import numpy as np
import pytest

from bertsearch.indexer.build import build_index
from bertsearch.indexer.embedder import Embedder
from bertsearch.jobs.cli import main
from bertsearch.jobs.datasets.beir import BeirDataset, DatasetError
from bertsearch.jobs.evaluation.config import CONFIGS, EvalConfig, pipeline_config
from bertsearch.jobs.evaluation.results import ConfigRun
from bertsearch.jobs.evaluation.runner import run_evaluation
from bertsearch.jobs.evaluation.scoring import (
    bootstrap_ci,
    length_buckets,
    paired_p_value,
    per_query_scores,
    ranx_run,
    score,
)
from bertsearch.jobs.indexing.reuse import ensure_index
from bertsearch.ranker.cross_encoder import CrossEncoder
from bertsearch.ranker.pipeline import PipelineConfig
from support.datasets import QUERIES, write_dataset
from support.files import write_jsonl

pytestmark = pytest.mark.unit

def config_run(name: str, rankings: dict[str, list[tuple[str, float]]]) -> ConfigRun:
    return ConfigRun(
        name=name, pipeline=PipelineConfig(), rankings=rankings, timings_ms=[{"total": 1.0}], wall_seconds=0.1
    )


# -- metrics on a hand-made run ------------------------------------------------------------------


HAND_QRELS = {"a": {"d1": 1, "d3": 2, "d7": 0}, "b": {"d2": 1}, "c": {"d9": 1}}
HAND_RUN = {
    # d3 (grade 2), d2 (unjudged), d1 (grade 1)
    "a": [("d3", 9.0), ("d2", 8.0), ("d1", 7.0)],
    # the relevant d2 at rank 4, after three documents with the SAME score: served order must count
    "b": [("d1", 5.0), ("d4", 5.0), ("d5", 5.0), ("d2", 5.0)],
    # no hits at all
    "c": [],
}


def test_metrics_match_hand_computed_values():
    from ranx import Qrels

    qrels = Qrels(HAND_QRELS)
    run = ranx_run(config_run("hand", HAND_RUN), qrels)
    scores = per_query_scores(qrels, run, ["ndcg@10", "mrr@10", "recall@100", "map@100", "recall@3"])
    # a: DCG = 2/log2(2) + 1/log2(4) = 2.5; ideal = 2 + 1/log2(3); linear gains as in trec_eval
    ndcg_a = 2.5 / (2 + 1 / math.log2(3))
    # b: one relevant at rank 4: DCG = 1/log2(5), ideal 1
    ndcg_b = 1 / math.log2(5)
    assert scores["ndcg@10"]["a"] == pytest.approx(ndcg_a)  # 0.950227
    assert scores["ndcg@10"]["b"] == pytest.approx(ndcg_b)  # 0.430677
    assert scores["ndcg@10"]["c"] == 0.0
    assert scores["mrr@10"] == pytest.approx({"a": 1.0, "b": 0.25, "c": 0.0})
    assert scores["recall@100"] == pytest.approx({"a": 1.0, "b": 1.0, "c": 0.0})
    assert scores["recall@3"] == pytest.approx({"a": 1.0, "b": 0.0, "c": 0.0})
    # a: relevant at ranks 1 and 3 -> (1/1 + 2/3) / 2; grade 0 (d7) is not relevant
    assert scores["map@100"] == pytest.approx({"a": (1 + 2 / 3) / 2, "b": 0.25, "c": 0.0})


def test_identical_runs_give_p_one_and_no_wins_or_losses(tmp_path):
    queries = {q: f"query {q}" for q in HAND_QRELS}
    from bertsearch.jobs.datasets.beir import JudgedQueries

    judged = JudgedQueries(split="test", queries=queries, qrels=HAND_QRELS)
    for test in ("student", "fisher"):
        config = EvalConfig(
            dataset=tmp_path, index_dir=tmp_path, out=tmp_path, configs=("bm25", "dense"), stat_test=test
        )
        result = score(judged, [config_run("bm25", HAND_RUN), config_run("dense", HAND_RUN)], config)
        (comparison,) = result.comparisons
        assert comparison.p_values == {m: 1.0 for m in result.metrics}
        assert not any(comparison.significant.values())
        for counts in comparison.wins_ties_losses.values():
            assert counts == {"wins": 0, "ties": 3, "losses": 0}
        assert comparison.helped == [] and comparison.hurt == []


def test_different_runs_are_compared_query_by_query(tmp_path):
    from bertsearch.jobs.datasets.beir import JudgedQueries

    judged = JudgedQueries(split="test", queries={q: q for q in HAND_QRELS}, qrels=HAND_QRELS)
    better = {**HAND_RUN, "b": [("d2", 1.0)], "c": [("d9", 1.0)]}
    config = EvalConfig(dataset=tmp_path, index_dir=tmp_path, out=tmp_path, configs=("bm25", "hybrid"))
    result = score(judged, [config_run("bm25", HAND_RUN), config_run("hybrid", better)], config)
    (comparison,) = result.comparisons
    assert comparison.wins_ties_losses["ndcg@10"] == {"wins": 2, "ties": 1, "losses": 0}
    assert [d.id for d in comparison.helped] == ["c", "b"]  # +1.0 before +0.569
    assert comparison.helped[1].delta == pytest.approx(1 - 1 / math.log2(5))
    assert comparison.p_values["ndcg@10"] < 1.0
    assert result.config("hybrid").means["mrr@10"] == pytest.approx(1.0)


def test_paired_p_value_and_bootstrap_interval():
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 1, 200)
    better = base + 0.1 + rng.normal(0, 0.05, 200)
    assert paired_p_value(base, better, "student") < 1e-6
    assert paired_p_value(base, better, "fisher") < 0.01
    assert paired_p_value(base, base + rng.normal(0, 0.05, 200), "student") > 0.001
    low, high = bootstrap_ci(base)
    assert low < base.mean() < high and high - low < 0.2


def test_length_buckets_split_at_tertiles():
    queries = {f"q{i}": " ".join(["w"] * i) for i in range(1, 10)}
    buckets = length_buckets(queries)
    assert buckets == {"short": ["q1", "q2", "q3"], "medium": ["q4", "q5", "q6"], "long": ["q7", "q8", "q9"]}


# -- configuration errors ------------------------------------------------------------------------


def test_unknown_configuration_names_the_known_ones(tmp_path):
    with pytest.raises(
        ValueError, match="unknown configuration 'colbert'; known configurations: bm25, dense, hybrid"
    ):
        EvalConfig(dataset=tmp_path, index_dir=tmp_path, out=tmp_path, configs=("bm25", "colbert"))
    with pytest.raises(ValueError, match="known configurations: .*hybrid\\+rerank"):
        pipeline_config("splade", 100)


def test_rerank_configuration_needs_a_reranker(tmp_path):
    with pytest.raises(ValueError, match="--reranker MODEL_DIR"):
        EvalConfig(dataset=tmp_path, index_dir=tmp_path, out=tmp_path, configs=("bm25", "hybrid+rerank"))


def test_configuration_names_map_to_pipeline_configs():
    assert {name: pipeline_config(name, 50).name for name in CONFIGS} == {name: name for name in CONFIGS}
    hybrid = pipeline_config("hybrid+rerank", 200, rerank_top_n=30)
    assert (hybrid.lexical_k, hybrid.dense_k, hybrid.rerank_top_n) == (200, 200, 30)


def test_missing_split_names_the_splits_that_exist(tmp_path, corpus_records):
    folder = write_dataset(tmp_path / "ds", corpus_records, splits=("test", "train"))
    with pytest.raises(DatasetError, match="has no split 'dev'; available splits: test, train"):
        BeirDataset(folder).load("dev")


def test_cli_reports_unknown_config_and_missing_split(tmp_path, corpus_records, capsys):
    folder = write_dataset(tmp_path / "ds", corpus_records)
    common = ["--index-dir", str(tmp_path / "idx"), "--out", str(tmp_path / "out")]
    assert main(["eval", str(folder), "--configs", "bm25,nope", *common]) == 2
    assert "known configurations: bm25, dense, hybrid" in capsys.readouterr().err
    assert main(["eval", str(folder), "--split", "validation", *common]) == 2
    assert "available splits: test" in capsys.readouterr().err
    assert not (tmp_path / "idx").exists()  # nothing was built for a run that could not start


def test_judged_queries_without_a_relevant_document_are_left_out(tmp_path, corpus_records):
    folder = write_dataset(tmp_path / "ds", corpus_records)
    with open(folder / "qrels" / "test.tsv", "a") as qrels:
        qrels.write("q9\tcats\t0\n")
    write_jsonl(folder / "queries.jsonl", [{"_id": q, "text": t} for q, t in {**QUERIES, "q9": "x"}.items()])
    judged = BeirDataset(folder).load("test")
    assert "q9" not in judged.queries and judged.skipped == ("q9",)


# -- a full report on tiny models ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory, tiny_bert_dir, tiny_cross_encoder_dir, corpus_records):
    root = tmp_path_factory.mktemp("eval")
    dataset = write_dataset(root / "ds", corpus_records)
    config = EvalConfig(
        dataset=dataset,
        index_dir=root / "index",
        out=root / "out",
        configs=("bm25", "dense", "hybrid", "hybrid+rerank"),
        reranker=tiny_cross_encoder_dir,
        depth=8,
        rerank_top_n=5,
        model=tiny_bert_dir,
        precision="fp32",
    )
    return run_evaluation(config, progress=False, command="test"), config


def test_full_report_writes_tables_json_runs_and_plots(tiny_report):
    result, config = tiny_report
    out = config.out
    for name in ("bm25", "dense", "hybrid", "hybrid+rerank"):
        lines = (out / "runs" / f"{name}.trec").read_text().splitlines()
        # dense ranks every document (depth 8 = the corpus); BM25 only those sharing a term
        assert len(lines) == 6 * 8 if name != "bm25" else 6 <= len(lines) < 6 * 8
        qid, q0, _, rank, _, tag = lines[0].split()
        assert (qid, q0, rank, tag) == ("q1", "Q0", "1", name)
    for plot in ("metrics.png", "deltas.png", "recall.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "report.json").read_text())
    assert [c["name"] for c in report["configs"]] == ["bm25", "dense", "hybrid", "hybrid+rerank"]
    assert set(report["configs"][0]["means"]) == {"ndcg@10", "mrr@10", "recall@100", "map@100"}
    assert [c["name"] for c in report["comparisons"]] == ["dense", "hybrid", "hybrid+rerank"]
    assert report["identity"]["index"]["built_by_this_run"] is True
    assert report["identity"]["dataset"]["queries"] == 6
    assert report["identity"]["reranker"]["fingerprint"]
    assert {"encode", "dense", "bm25", "rrf", "rerank", "total"} <= set(report["configs"][3]["latency_ms"])
    assert set(report["configs"][3]["latency_ms"]["total"]) == {"mean", "p95"}
    assert [s["bucket"] for s in report["slices"]] == ["short", "medium", "long"]
    assert sum(s["queries"] for s in report["slices"]) == 6
    markdown = (out / "report.md").read_text()
    for heading in (
        "## Metrics",
        "## Per query against bm25",
        "by query length",
        "## Latency",
        "![Recall@k]",
    ):
        assert heading in markdown
    assert "| hybrid+rerank |" in markdown and "p=" in markdown


def test_rerank_configuration_is_reranked(tiny_report):
    result, config = tiny_report
    rerank = result.config("hybrid+rerank")
    assert rerank.notes == () and rerank.pipeline["rerank_top_n"] == 5
    runs = config.out / "runs"
    ranked = [line.split()[2] for line in (runs / "hybrid+rerank.trec").read_text().splitlines()]
    fused = [line.split()[2] for line in (runs / "hybrid.trec").read_text().splitlines()]
    # the cross-encoder re-orders each query's top 5 and leaves the rest in fused order
    for start in range(0, len(fused), 8):
        assert sorted(ranked[start : start + 5]) == sorted(fused[start : start + 5])
        assert ranked[start + 5 : start + 8] == fused[start + 5 : start + 8]
    assert ranked != fused


def test_a_reranker_length_and_precision_are_measured_as_asked(
    tiny_report, tiny_cross_encoder_dir, corpus_records
):
    """--rerank-max-length / --rerank-precision: the run reranks with that length and precision
    (the run's scores are those of that length) and the report records both next to the model's."""
    _, config = tiny_report
    short = run_evaluation(
        replace(config, out=config.out / "short", configs=("hybrid", "hybrid+rerank"),
                rerank_max_length=8, rerank_precision="fp32"),
        progress=False,
    )
    reranker = short.identity["reranker"]
    assert (reranker["max_length"], reranker["precision"], reranker["bf16"]) == (8, "fp32", False)
    assert reranker["model_max_length"] != 8
    assert short.config("hybrid+rerank").pipeline["rerank_weight"] == 1.0  # the score is the reranker's
    lines = (config.out / "short" / "runs" / "hybrid+rerank.trec").read_text().splitlines()
    head = [line.split() for line in lines if line.startswith("q1 ")][:5]
    bodies = {r["_id"]: f"{r['title']} {r['text']}".strip() for r in corpus_records}
    query = BeirDataset(config.dataset).load(config.split).queries["q1"]
    encoder = CrossEncoder(tiny_cross_encoder_dir, max_length=8, precision="fp32").load()
    expected = encoder.score_pairs([(query, bodies[row[2]]) for row in head])
    np.testing.assert_allclose([float(row[4]) for row in head], expected, atol=1e-4)
    at_model_length = CrossEncoder(tiny_cross_encoder_dir, precision="fp32").load()
    assert not np.allclose(at_model_length.score_pairs([(query, bodies[row[2]]) for row in head]), expected)


def test_an_existing_index_of_the_corpus_is_reused(tiny_report, tiny_bert_dir):
    _, config = tiny_report
    again = run_evaluation(
        EvalConfig(
            dataset=config.dataset,
            index_dir=config.index_dir,
            out=config.out / "again",
            configs=("bm25",),
            depth=8,
        ),
        progress=False,
    )
    assert again.identity["index"]["built_by_this_run"] is False
    assert again.identity["encoder"]["fingerprint"] == Embedder(tiny_bert_dir).fingerprint()
    assert again.comparisons == [] and (config.out / "again" / "deltas.png").is_file()


def test_index_of_another_corpus_is_not_used(tmp_path, tiny_bert_dir, corpus_records):
    other = write_jsonl(tmp_path / "other.jsonl", corpus_records[:3])
    build_index(other, tmp_path / "index", Embedder(tiny_bert_dir).load(), progress=False)
    dataset = write_dataset(tmp_path / "ds", corpus_records)
    result = run_evaluation(
        EvalConfig(
            dataset=dataset,
            index_dir=tmp_path / "index",
            out=tmp_path / "out",
            configs=("bm25",),
            model=tiny_bert_dir,
            depth=8,
        ),
        progress=False,
    )
    assert result.identity["index"]["built_by_this_run"] is True
    assert result.identity["index"]["manifest"]["documents"] == len(corpus_records)


def test_a_touched_corpus_keeps_its_index_until_its_bytes_change(tmp_path, tiny_bert_dir, corpus_records):
    dataset = BeirDataset(write_dataset(tmp_path / "ds", corpus_records))
    corpus = dataset.corpus_path
    first, built = ensure_index(dataset, tmp_path / "index", model=tiny_bert_dir, progress=False)
    assert built and first.manifest.source_digest == hashlib.sha256(corpus.read_bytes()).hexdigest()

    later = corpus.stat().st_mtime + 3600  # copied or restored: newer mtime, same bytes
    os.utime(corpus, (later, later))
    again, built = ensure_index(dataset, tmp_path / "index", model=tiny_bert_dir, progress=False)
    assert not built and again.manifest.version == first.manifest.version

    write_jsonl(corpus, corpus_records[:5])
    os.utime(corpus, (later + 60, later + 60))
    edited, built = ensure_index(dataset, tmp_path / "index", model=tiny_bert_dir, progress=False)
    assert built and edited.manifest.documents == 5
