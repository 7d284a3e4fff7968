"""``bertsearch train`` end to end: mining, Ray, dev evaluation through the `bertsearch eval` code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bertsearch.indexer.build import build_index
from bertsearch.indexer.documents import Document
from bertsearch.indexer.embedder import Embedder
from bertsearch.jobs.datasets.beir import BeirDataset
from bertsearch.ranker.cross_encoder import CrossEncoder
from bertsearch.ranker.training.pseudo_queries import (
    PseudoQueryConfig,
    pseudo_queries,
)
from support.files import write_jsonl
from support.training_data import PSEUDO_CORPUS, TOY_QUERIES

# --- the command, end to end (mining, Ray, dev evaluation through `bertsearch eval` code) ----------


@pytest.mark.slow
def test_train_command_mines_trains_evaluates_dev_and_writes_model_dir(
    local_ray, tmp_path, tiny_bert_dir, corpus_records
):
    from bertsearch.jobs.cli import main

    data = tmp_path / "data"
    (data / "qrels").mkdir(parents=True)
    write_jsonl(data / "corpus.jsonl", corpus_records)
    queries, rows = [], {"train": [], "dev": []}
    for doc_id, texts in sorted(TOY_QUERIES.items()):
        for n, text in enumerate(texts):
            queries.append({"_id": f"{doc_id}-{n}", "text": text})
            rows["train" if n == 0 else "dev"].append(f"{doc_id}-{n}\t{doc_id}\t1")
    write_jsonl(data / "queries.jsonl", queries)
    for split, lines in rows.items():
        (data / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(lines) + "\n")
    build_index(data, tmp_path / "index", Embedder(tiny_bert_dir).load(), progress=False)

    out = tmp_path / "model"
    index = str(tmp_path / "index")
    args = ["train", str(data), "--split", "train", "--dev-split", "dev", "--index-dir", index,
            "--out", str(out), "--base-model", str(tiny_bert_dir), "--workers", "2", "--cpus-per-worker", "1",
            "--epochs", "2", "--mine-depth", "8", "--negatives", "3", "--lr", "1e-2", "--max-length", "64",
            "--dev-depth", "8", "--dev-rerank-top-n", "8"]
    code = main(args)
    assert code == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert [e["epoch"] for e in meta["epochs"]] == [1, 2]
    assert all(0.0 <= e["dev_ndcg@10"] <= 1.0 and "dev_hybrid_ndcg@10" in e for e in meta["epochs"])
    # every epoch's rerank weight is chosen on dev; the best epoch is picked at its chosen weight
    for epoch in meta["epochs"]:
        assert epoch["dev_rerank_weight"] in [w / 10 for w in range(11)]
        assert epoch["dev_tuned_ndcg@10"] >= epoch["dev_ndcg@10"] - 1e-9  # weight 1.0 is one of the choices
    best = max(meta["epochs"], key=lambda e: (e["dev_tuned_ndcg@10"], -e["epoch"]))
    assert meta["best_epoch"] == best["epoch"] and meta["selected_by"] == "dev_tuned_ndcg@10"
    assert meta["rerank_weight"] == best["dev_rerank_weight"] and meta["max_length"] == 64
    served = CrossEncoder(out)
    assert (served.max_length, served.rerank_weight) == (64, best["dev_rerank_weight"])
    assert served.rerank_top_n == 8  # the depth the weight was tuned at
    assert meta["data"]["source"]["mode"] == "judgments" and meta["data"]["dev_split"] == "dev"
    assert (out.with_name("model.work") / "dev" / "epoch-002" / "report.md").is_file()
    groups = [json.loads(line) for line in (out.with_name("model.work") / "groups.jsonl").open()]
    assert len(groups) == 8 and all(g["doc_ids"][0] not in g["doc_ids"][1:] for g in groups)
    # the written folder is a plain Hugging Face checkpoint: transformers and sentence-transformers load it
    from sentence_transformers import CrossEncoder as SentenceTransformersCrossEncoder
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(out).config.num_labels == 1
    pairs = [("roasted beans", "Coffee is brewed from roasted beans"), ("roasted beans", "Rust")]
    ours = CrossEncoder(out, max_length=64, precision="fp32").load().score_pairs(pairs)
    theirs = SentenceTransformersCrossEncoder(str(out), max_length=64).predict(pairs)  # sigmoid of the logit
    np.testing.assert_allclose(theirs, 1 / (1 + np.exp(-ours)), rtol=1e-4, atol=1e-5)


@pytest.fixture()
def unjudged_corpus(tmp_path, tiny_bert_dir, corpus_records) -> tuple[Path, list[dict]]:
    """A folder holding a corpus and nothing else (no queries, no qrels), indexed in tmp_path/index."""
    data = tmp_path / "data"
    data.mkdir()
    records = corpus_records + [{"_id": d.id, "title": d.title, "text": d.text} for d in PSEUDO_CORPUS]
    write_jsonl(data / "corpus.jsonl", records)
    build_index(data, tmp_path / "index", Embedder(tiny_bert_dir).load(), progress=False)
    return data, records


@pytest.mark.integration
def test_label_free_train_command_needs_no_judgments_and_writes_the_given_operating_point(
    local_ray, tmp_path, tiny_bert_dir, unjudged_corpus
):
    from bertsearch.jobs.cli import main

    data, records = unjudged_corpus
    out = tmp_path / "model"
    code = main(["train", str(data), "--pseudo-queries", "crop", "--index-dir", str(tmp_path / "index"),
                 "--out", str(out), "--base-model", str(tiny_bert_dir), "--workers", "2", "--cpus-per-worker",
                 "1", "--epochs", "1", "--groups-per-batch", "1", "--mine-depth", "8", "--negatives", "3",
                 "--max-length", "64", "--rerank-weight", "0.2", "--rerank-top-n", "5"])
    assert code == 0
    meta = json.loads((out / "metadata.json").read_text())
    source = meta["data"]["source"]
    assert source["mode"] == "pseudo-queries" and source["pseudo_queries"]["method"] == "crop"
    docs = [Document(r["_id"], r["title"], r["text"]) for r in records]
    made = pseudo_queries(docs, PseudoQueryConfig("crop"))
    assert meta["training_groups"] == len(made) >= 2  # one group per crop, negatives mined from the index
    served = CrossEncoder(out)
    assert (served.rerank_weight, served.rerank_top_n, served.max_length) == (0.2, 5, 64)
    # a judgment-free check of the model: second crops of its training documents as a dev split
    dev = tmp_path / "pseudo-dev"
    assert main(["pseudo-dev", str(data), "--out", str(dev), "--queries", "2"]) == 0
    assert main(["tune-rerank-weight", str(dev), "--split", "dev", "--reranker", str(out), "--index-dir",
                 str(dev / "index"), "--rerank-top-n", "5", "--no-progress"]) == 0
    qrels = BeirDataset(dev).load("dev").qrels
    groups = [json.loads(line) for line in (out.with_name("model.work") / "groups.jsonl").open()]
    trained = {g["doc_ids"][0] for g in groups}
    assert len(qrels) == 2
    assert all(q == f"dev:{doc}" and doc in trained for q, docs in qrels.items() for doc in docs)
    tuned = json.loads((out / "metadata.json").read_text())
    tuning = tuned["rerank_weight_tuning"]
    assert (tuning["dataset"], tuning["split"]) == (str(dev.resolve()), "dev")
    assert len(tuning["by_weight"]) == 11  # every weight of the grid was scored on the pseudo-dev queries
    assert tuned["rerank_weight"] == tuning["weight"] and tuned["rerank_top_n"] == 5
    assert (dev / "index" / "CURRENT").is_file()  # the copy without the dev text was indexed
