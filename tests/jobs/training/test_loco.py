"""Several collections: `train --datasets` mixes them; `loco` holds each out in turn."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from bertsearch.indexer.build import build_index
from bertsearch.indexer.embedder import Embedder
from bertsearch.ranker.factory import open_pipeline
from support.files import write_jsonl
from support.training_data import TOY_QUERIES

COLLECTIONS = {
    "pets": ["cats", "dogs", "tea"],
    "code": ["python", "rust", "coffee"],
    "earth": ["volcano", "glacier", "cats"],
}
TINY = ["--base-model", None, "--workers", "1", "--cpus-per-worker", "1", "--epochs", "1",
        "--max-steps-per-epoch", "2", "--mine-depth", "3", "--negatives", "2", "--max-length", "32"]


def _collection(root: Path, name: str, doc_ids: list[str], records: list[dict], bert: Path) -> Path:
    data = root / "data" / name
    (data / "qrels").mkdir(parents=True)
    write_jsonl(data / "corpus.jsonl", [r for r in records if r["_id"] in doc_ids])
    queries = [{"_id": f"{name}-{d}-{n}", "text": t} for d in doc_ids for n, t in enumerate(TOY_QUERIES[d])]
    write_jsonl(data / "queries.jsonl", queries)
    rows = [f"{q['_id']}\t{q['_id'].split('-')[1]}\t1" for q in queries]
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
    build_index(data, root / "index" / name, Embedder(bert).load(), progress=False)
    return data


@pytest.fixture(scope="module")
def collections(tmp_path_factory, tiny_bert_dir, corpus_records):
    root = tmp_path_factory.mktemp("collections")
    data = {n: _collection(root, n, ids, corpus_records, tiny_bert_dir) for n, ids in COLLECTIONS.items()}
    return root, data


def _tiny(bert: Path) -> list[str]:
    return [str(bert) if arg is None else arg for arg in TINY]


@pytest.mark.integration
def test_train_on_several_collections_records_the_mix_and_its_corpora(local_ray, collections, tiny_bert_dir):
    from bertsearch.jobs.cli import main

    root, data = collections
    out = root / "mixed"
    spec = f"{data['pets']}:test,{data['code']}:test"
    code = main(["train", "--datasets", spec, "--index-dir", str(root / "index"), "--out", str(out),
                 "--temperature", "1", *_tiny(tiny_bert_dir)])
    assert code == 0
    meta = json.loads((out / "metadata.json").read_text())
    mix = meta["data"]["mixture"]
    assert mix["temperature"] == 1.0 and set(mix["collections"]) == {"pets", "code"}
    for counts in mix["collections"].values():
        assert (counts["groups"], counts["sampled"], counts["share"]) == (6, 6, 0.5)
    assert {c["source"] for c in meta["data"]["corpora"]} == {str(data["pets"]), str(data["code"])}
    assert meta["training_groups"] == 12
    for name in ("pets", "code"):  # each collection mined from its own index, kept for a rerun
        groups = out.with_name("mixed.work") / "collections" / name / "groups.jsonl"
        ids = {json.loads(line)["doc_ids"][0] for line in groups.open()}
        assert ids == set(COLLECTIONS[name])
    assert main(["train", "--datasets", spec, str(data["pets"]), "--index-dir", "x", "--out", "y"]) == 2


@pytest.mark.slow
def test_loco_holds_each_collection_out_chooses_its_point_elsewhere_and_writes_the_rule(
    local_ray, collections, tiny_bert_dir, capsys
):
    from bertsearch.jobs.cli import main

    root, data = collections
    work, final = root / "loco", root / "general"
    argv = ["loco", *(str(p) for p in data.values()), "--index-dir", str(root / "index"), "--work", str(work),
            "--depths", "2,3", "--final-out", str(final), "--no-progress", "--pretrain-epochs", "1",
            "--pretrain-steps", "1", "--pretrain-batch-size", "2", *_tiny(tiny_bert_dir)]
    assert main(argv) == 0
    report = json.loads((work / "report.json").read_text())
    folds = {f["collection"]: f for f in report["folds"]}
    assert set(folds) == set(COLLECTIONS)
    tables = {n: json.loads((work / "folds" / n / "points.json").read_text()) for n in COLLECTIONS}
    for name, fold in folds.items():
        assert fold["trained_on"] == [n for n in COLLECTIONS if n != name]  # never its own
        meta = json.loads((work / "folds" / name / "model" / "metadata.json").read_text())
        assert name not in meta["data"]["mixture"]["collections"]
        # fine-tuned from a masked-LM run on the held-out corpus's documents, and only those
        pretrained = work / "folds" / name / "pretrained"
        assert meta["base_model"] == str(pretrained.resolve())
        corpus = json.loads((pretrained / "pretraining.json").read_text())["data"]
        assert (corpus["corpus"], corpus["documents"]) == (str(data[name].resolve()), 3)
        # the fold's point is the best mean over the *other* folds' held-out tables
        others = [tables[n] for n in COLLECTIONS if n != name]
        means = {(d, w): np.mean([np.mean(t["grid"][d][w]) for t in others])
                 for d in ("2", "3") for w in others[0]["grid"]["2"]}
        best = max(means.values())
        assert means[(str(fold["depth"]), f"{fold['weight']:.1f}")] == pytest.approx(best)
        served = np.mean(tables[name]["grid"][str(fold["depth"])][f"{fold['weight']:.1f}"])
        assert fold["reranked"] == pytest.approx(served)
        assert fold["hybrid"] == pytest.approx(np.mean(tables[name]["hybrid"]))
        assert fold["wins"] + fold["ties"] + fold["losses"] == fold["queries"] == 6
    markdown = (work / "report.md").read_text()
    assert all(f"| {name} | 6 |" in markdown for name in COLLECTIONS) and "Serving rule" in markdown
    rule = json.loads((work / "unseen_rule.json").read_text())
    assert (rule["rerank_top_n"], rule["rerank_weight"]) == (report["unseen_rule"]["rerank_top_n"],
                                                            report["unseen_rule"]["rerank_weight"])
    # the general model serves the rule on a corpus it never saw, its own point on its own corpora
    unseen = root / "data" / "unseen"
    (unseen / "qrels").mkdir(parents=True)
    write_jsonl(unseen / "corpus.jsonl", [{"_id": "x", "title": "X", "text": "a new corpus about nothing"}])
    build_index(unseen, root / "index-unseen", Embedder(tiny_bert_dir).load(), progress=False)
    pipeline = open_pipeline(root / "index-unseen", reranker=final)
    try:
        assert pipeline.rerank_point == (rule["rerank_top_n"], rule["rerank_weight"], "unseen")
    finally:
        pipeline.close()
    pipeline = open_pipeline(root / "index" / "pets", reranker=final)
    try:
        assert pipeline.rerank_point[2] == "in-domain"
    finally:
        pipeline.close()
    # a rerun finds every fold done and trains nothing again
    before = {n: (work / "folds" / n / "model" / "model.safetensors").stat().st_mtime for n in COLLECTIONS}
    capsys.readouterr()
    assert main([a for a in argv if a != "--final-out" and a != str(final)]) == 0
    printed = capsys.readouterr().out
    assert all(f"fold {n}: done before" in printed for n in COLLECTIONS)
    after = {n: (work / "folds" / n / "model" / "model.safetensors").stat().st_mtime for n in COLLECTIONS}
    assert after == before
    assert json.loads((work / "report.json").read_text())["folds"] == report["folds"]


def _table(name: str, grid: dict[str, dict[str, list[float]]], hybrid: list[float]) -> dict:
    queries = {f"{name}-{n}": "a query of " + "word " * n for n in range(len(hybrid))}
    return {"collection": name, "metric": "ndcg@10", "queries": queries, "hybrid": hybrid, "grid": grid,
            "trained_on": ["others"]}


@pytest.mark.unit
def test_each_fold_is_scored_at_the_point_the_other_folds_chose_and_losses_are_reported(tmp_path):
    from bertsearch.jobs.training.loco import LocoJob, _summary, markdown
    from bertsearch.jobs.training.mixture import Collection, MixtureJob

    # a: best at (2, 1.0) on its own table; b and c both prefer (3, 0.5): a is scored at (3, 0.5)
    tables = {
        "a": _table("a", {"2": {"0.5": [0.5, 0.5, 0.5], "1.0": [0.9, 0.9, 0.9]},
                          "3": {"0.5": [0.6, 0.2, 0.1], "1.0": [0.4, 0.4, 0.4]}}, [0.5, 0.5, 0.5]),
        "b": _table("b", {"2": {"0.5": [0.1, 0.1, 0.1], "1.0": [0.2, 0.2, 0.2]},
                          "3": {"0.5": [0.8, 0.8, 0.8], "1.0": [0.3, 0.3, 0.3]}}, [0.4, 0.4, 0.4]),
        "c": _table("c", {"2": {"0.5": [0.3, 0.3, 0.3], "1.0": [0.3, 0.3, 0.3]},
                          "3": {"0.5": [0.7, 0.7, 0.7], "1.0": [0.1, 0.1, 0.1]}}, [0.3, 0.3, 0.3]),
    }
    collections = tuple(Collection(tmp_path / n, tmp_path / "idx" / n, "test") for n in tables)
    job = LocoJob(collections=collections, work=tmp_path, depths=(2, 3), weights=(0.5, 1.0),
                  template=MixtureJob(collections=collections, out=tmp_path / "x"))
    summary = _summary(job, tables)
    folds = {f["collection"]: f for f in summary["folds"]}
    assert (folds["a"]["depth"], folds["a"]["weight"]) == (3, 0.5)  # not its own best (2, 1.0)
    assert folds["a"]["best_point_in_hindsight"] == {"depth": 2, "weight": 1.0, "value": pytest.approx(0.9)}
    assert folds["a"]["reranked"] == pytest.approx(0.3) and folds["a"]["delta"] == pytest.approx(-0.2)
    assert (folds["a"]["wins"], folds["a"]["ties"], folds["a"]["losses"]) == (1, 0, 2)
    # b: over a and c, (2, 1.0) has the best mean (0.6); c: over a and b, (2, 1.0) and (3, 0.5) tie
    # at 0.55, and a tie goes to the smaller depth
    assert (folds["b"]["depth"], folds["b"]["weight"], folds["b"]["delta"]) == (2, 1.0, pytest.approx(-0.2))
    assert (folds["c"]["depth"], folds["c"]["weight"], folds["c"]["delta"]) == (2, 1.0, pytest.approx(0.0))
    assert summary["significant"]["wins"] == 0 and summary["ahead_on"] == 0
    rule = summary["unseen_rule"]
    assert (rule["rerank_top_n"], rule["rerank_weight"]) == (3, 0.5)  # best mean over all three
    report = markdown(summary)
    assert "Reranking lowers the mean on: a" in report
    assert any(s["hurts"] for s in folds["a"]["slices"])
    assert "- a, " in report  # its hurting slices are listed
    # the reranker alone at each fold's depth: a 0.4 < 0.5 and c 0.3 = 0.3 hybrid, b 0.2 < 0.4
    assert [folds[n]["alone"] for n in "abc"] == [pytest.approx(0.4), pytest.approx(0.2), pytest.approx(0.3)]
    assert "The reranker alone (weight 1) ranks below hybrid on: a, b." in report
    assert folds["a"]["training"] is None and "barely learnt" not in report  # no model folders here


@pytest.mark.unit
def test_a_fold_whose_model_barely_learnt_is_named_in_the_report(tmp_path):
    from bertsearch.jobs.training.loco import LocoJob, _summary, markdown
    from bertsearch.jobs.training.mixture import Collection, MixtureJob
    from bertsearch.ranker.model_dir import ModelRecord

    grid = {"2": {"0.0": [0.5, 0.5], "1.0": [0.6, 0.4]}}
    tables = {n: _table(n, grid, [0.5, 0.5]) for n in ("a", "b")}
    for name, loss in (("a", 2.0), ("b", 1.2)):  # ln 8 = 2.079: a is at 96 % of chance, b learnt
        model = tmp_path / "folds" / name / "model"
        model.mkdir(parents=True)
        mixture = {"collections": {"others": {"sampled": 30 if name == "a" else 70}}}
        ModelRecord(provenance={"epochs": [{"epoch": 1, "train_loss": loss}], "group_size": 8,
                                "hyperparameters": {"loss": "listwise"},
                                "data": {"mixture": mixture}}).write(model)  # fmt: skip
    collections = tuple(Collection(tmp_path / n, tmp_path / "idx" / n, "test") for n in tables)
    job = LocoJob(collections=collections, work=tmp_path, depths=(2,), weights=(0.0, 1.0),
                  template=MixtureJob(collections=collections, out=tmp_path / "x"))
    summary = _summary(job, tables)
    training = {f["collection"]: f["training"] for f in summary["folds"]}
    assert training["a"] == {"loss": 2.0, "chance": pytest.approx(2.0794, abs=1e-4), "learnt": False}
    assert training["b"]["learnt"] is True
    report = markdown(summary)
    assert "barely learnt" in report and "random ranker's): a. " in report
    assert "| 2.000 (2.079) |" in report
    assert [f["sampled"] for f in summary["folds"]] == [{"others": 30}, {"others": 70}]
    assert "| a | 2 | others 30 |" in report and "| b | 2 | others 70 |" in report  # what balancing drew


@pytest.mark.unit
def test_a_mix_file_it_cannot_use_is_refused_naming_the_file_and_field(tmp_path):
    from bertsearch.jobs.training.mixture import read_mix

    mix = tmp_path / "mix.yaml"
    cases = {
        "collections: [": "not valid YAML",
        "collections: []": "a mix file holds `collections:`",
        "collections:\n  - split: test": "collection 1: give a mapping with at least `dataset`",
        "collections:\n  - dataset: a\n    weight: abc": "collection 1 weight must be a positive number",
        "collections:\n  - dataset: a\n    weight: .nan": "collection 1 weight must be a positive number",
        "collections:\n  - dataset: 5": "`dataset` must be a string",
        "collections:\n  - dataset: a\n    colour: red": "unknown fields ['colour']",
        "temperature: hot\ncollections:\n  - dataset: a": "temperature must be a positive number",
        "collections:\n  - dataset: a\n    name: ../x": "cannot name a collection",
    }
    for text, message in cases.items():
        mix.write_text(text)
        with pytest.raises(ValueError, match=re.escape(message)) as refused:
            read_mix(mix, tmp_path / "idx")
        assert str(mix) in str(refused.value)
    mix.write_text("temperature: 3\ncollections:\n  - dataset: data/a\n    split: test\n    weight: 2\n")
    (collection,), temperature = read_mix(mix, tmp_path / "idx")
    assert temperature == 3.0 and collection.dataset == tmp_path / "data" / "a"
    assert (collection.index_dir, collection.split) == (tmp_path / "idx" / "a", "test")
    assert collection.weight == 2.0
    with pytest.raises(ValueError, match="cannot read it"):
        read_mix(tmp_path / "missing.yaml", None)
