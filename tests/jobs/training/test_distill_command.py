"""`bertsearch distill` end to end: a student of one teacher layer, trained on the teacher's
scores of mined groups, on Ray Train; the result is a normal reranker folder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bertsearch.indexer.build import build_index
from bertsearch.indexer.embedder import Embedder
from bertsearch.ranker.cross_encoder import CrossEncoder
from bertsearch.ranker.model_dir import ModelRecord
from support.files import write_jsonl
from support.training_data import TOY_QUERIES


@pytest.mark.integration
def test_distill_trains_a_smaller_student_on_the_teachers_scores(
    local_ray, tmp_path, tiny_bert_dir, tiny_cross_encoder_dir, corpus_records
):
    from bertsearch.jobs.cli import main

    data = tmp_path / "data"
    (data / "qrels").mkdir(parents=True)
    write_jsonl(data / "corpus.jsonl", corpus_records)
    queries = [{"_id": f"{doc}-{n}", "text": text}
               for doc, texts in TOY_QUERIES.items() for n, text in enumerate(texts)]  # fmt: skip
    write_jsonl(data / "queries.jsonl", queries)
    rows = [f"{q['_id']}\t{q['_id'].rsplit('-', 1)[0]}\t1" for q in queries]
    (data / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
    build_index(data, tmp_path / "index", Embedder(tiny_bert_dir).load(), progress=False)
    teacher = shutil.copytree(tiny_cross_encoder_dir, tmp_path / "teacher")
    ModelRecord(max_length=64, rerank_weight=0.5, rerank_top_n=8).write(teacher)

    out = tmp_path / "student"
    code = main([
        "distill", str(teacher), str(data), "--split", "train", "--index-dir", str(tmp_path / "index"),
        "--out", str(out), "--layers", "1", "--workers", "2", "--cpus-per-worker", "1", "--epochs", "2",
        "--mine-depth", "8", "--negatives", "3", "--max-length", "64", "--lr", "1e-3",
        "--rerank-weight", "0.5", "--rerank-top-n", "8",
    ])  # fmt: skip
    assert code == 0
    meta = json.loads((out / "metadata.json").read_text())
    distilled = meta["data"]["source"]["distillation"]
    assert distilled["layers_kept"] == [0] and distilled["teacher"] == str(teacher.resolve())
    assert meta["hyperparameters"]["loss"] == "margin-mse"
    losses = [e["train_loss"] for e in meta["epochs"]]
    assert losses[1] < losses[0]  # the student moves towards the teacher's margins
    student = CrossEncoder(out).load()
    assert student.model.config.num_hidden_layers == 1 and student.max_length == 64
    # the groups carry the teacher's own scores of their passages
    groups = [json.loads(line) for line in (tmp_path / "student.work" / "groups.jsonl").open()]
    assert len(groups) == len(queries)
    scorer = CrossEncoder(teacher).load()
    first = groups[0]
    expected = scorer.score_pairs([(first["query"], p) for p in first["passages"]])
    np.testing.assert_allclose(first["teacher_scores"], expected, atol=1e-5)
