"""Cross-encoder fine-tuning: mining, pseudo-queries, losses, and Ray Train runs on a tiny BERT."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_jsonl

from indexer.build import build_index
from indexer.documents import Document
from indexer.embedder import Embedder
from jobs.beir import BeirDataset
from ranker.cross_encoder import CrossEncoder
from ranker.factory import open_pipeline
from ranker.training.examples import (
    MiningConfig,
    Positive,
    TrainingGroup,
    TrainingQuery,
    mine_groups,
    queries_from_qrels,
)
from ranker.training.loop import TrainConfig, epoch_order, steps_per_epoch, warmup_linear_decay
from ranker.training.losses import listwise_softmax_ce, pointwise_bce
from ranker.training.pseudo_queries import (
    PseudoQueryConfig,
    pseudo_queries,
    split_pseudo_queries,
    split_sentences,
)

# --- toy data ---------------------------------------------------------------------------------

TOY_QUERIES = {
    "cats": ["purring pets that hunt mice", "small carnivorous mammals"],
    "dogs": ["loyal companions descended from wolves", "herding and guarding animals"],
    "python": ["dynamic typing programming language", "garbage collected scripting"],
    "rust": ["memory safety systems language", "programming without garbage collection"],
    "tea": ["unoxidised camellia leaves", "brewed leaves with caffeine"],
    "coffee": ["roasted beans espresso", "coffee through fine grounds"],
    "volcano": ["magma rises through the crust", "eruption of a mountain"],
    "glacier": ["rivers of ice carving valleys", "slow ice flow downhill"],
}


FILLER = [
    "Minutes of the committee meeting held on Tuesday.",
    "Page intentionally left blank.",
    "Copyright notice and terms of use apply.",
    "Table of contents continues overleaf.",
]


def toy_groups(corpus_records: list[dict], negatives: int = 3) -> list[TrainingGroup]:
    """16 groups: a query, its own document, then ``negatives`` filler passages.

    Filler negatives keep the task learnable by a randomly initialised 2-layer BERT in a dozen
    steps; telling real documents apart takes it far longer and would only slow the test.
    """
    docs = {r["_id"]: Document(r["_id"], r["title"], r["text"]) for r in corpus_records}
    groups = []
    for doc_id, queries in sorted(TOY_QUERIES.items()):
        for n, query in enumerate(queries):
            chosen = [(n + k) % len(FILLER) for k in range(negatives)]
            groups.append(
                TrainingGroup(
                    query_id=f"{doc_id}-{n}",
                    query=query,
                    doc_ids=(doc_id, *(f"filler-{i}" for i in chosen)),
                    passages=(docs[doc_id].body, *(FILLER[i] for i in chosen)),
                )
            )
    return groups


# --- losses and schedule (unit) -----------------------------------------------------------------


@pytest.mark.unit
def test_listwise_loss_is_the_softmax_cross_entropy_of_the_positive():
    scores = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, -1.0]])
    expected = -np.mean([np.log(np.exp(2) / (np.exp(2) + 2)), np.log(1 / (1 + np.e + np.exp(-1)))])
    assert float(listwise_softmax_ce(scores)) == pytest.approx(expected, rel=1e-6)
    assert float(listwise_softmax_ce(torch.zeros(4, 8))) == pytest.approx(math.log(8), rel=1e-6)


@pytest.mark.unit
def test_pointwise_bce_labels_column_zero_positive():
    scores = torch.tensor([[3.0, -3.0]])
    expected = -(np.log(1 / (1 + np.exp(-3.0))) + np.log(1 - 1 / (1 + np.exp(3.0)))) / 2
    assert float(pointwise_bce(scores)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="negatives"):
        pointwise_bce(torch.zeros(3, 1))


@pytest.mark.unit
def test_schedule_warms_up_then_decays_to_zero_and_epoch_order_is_seeded():
    factor = warmup_linear_decay(total_steps=10, warmup_steps=4)
    values = [factor(s) for s in range(11)]
    assert values[:4] == sorted(values[:4]) and values[3] < 1.0 and values[4] == 1.0
    assert values[10] == 0.0 and values[4:] == sorted(values[4:], reverse=True)
    assert epoch_order(20, seed=1, epoch=2) == epoch_order(20, seed=1, epoch=2)
    assert epoch_order(20, seed=1, epoch=2) != epoch_order(20, seed=1, epoch=3)
    assert sorted(epoch_order(20, seed=1, epoch=2)) == list(range(20))


@pytest.mark.unit
def test_train_config_rejects_impossible_settings():
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="hinge")
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(learning_rate=0)
    with pytest.raises(ValueError, match="cannot fill one step"):
        steps_per_epoch(3, workers=2, config=TrainConfig(groups_per_batch=2))
    assert steps_per_epoch(17, workers=2, config=TrainConfig(groups_per_batch=2, grad_accum=2)) == 2
    assert steps_per_epoch(400, workers=1, config=TrainConfig(max_steps_per_epoch=5)) == 5


@pytest.mark.unit
def test_best_epoch_takes_the_highest_dev_metric_and_the_earliest_on_ties():
    from jobs.train import best_epoch

    history = [{"epoch": e, "dev_ndcg@10": v} for e, v in ((1, 0.5), (2, 0.7), (3, 0.7))]
    assert best_epoch(history, "dev_ndcg@10") == 2
    assert best_epoch(history, None) == 3
    with pytest.raises(ValueError, match="dev_mrr@10"):
        best_epoch(history, "dev_mrr@10")


@pytest.mark.unit
def test_saved_groups_come_back_and_other_settings_are_refused(tmp_path, corpus_records):
    from jobs.train import load_groups, save_groups

    groups = toy_groups(corpus_records)
    info = {"dataset": "toy", "mining": {"depth": 8}}
    assert load_groups(tmp_path, info) is None
    save_groups(tmp_path, groups, info)
    assert load_groups(tmp_path, info) == groups
    with pytest.raises(ValueError, match="mining"):
        load_groups(tmp_path, {"dataset": "toy", "mining": {"depth": 50}})


@pytest.mark.unit
def test_train_job_refuses_title_queries_with_titled_negatives(tmp_path):
    from jobs.train import TrainJob

    with pytest.raises(ValueError, match="'text' passages"):
        TrainJob(dataset=tmp_path, index_dir=tmp_path, out=tmp_path / "m", pseudo=PseudoQueryConfig("title"))
    with pytest.raises(ValueError, match="dev split must differ"):
        TrainJob(dataset=tmp_path, index_dir=tmp_path, out=tmp_path / "m", dev_split="train")
    with pytest.raises(ValueError, match="a dev split chooses it"):
        TrainJob(dataset=tmp_path, index_dir=tmp_path, out=tmp_path / "m", dev_split="dev", rerank_weight=0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        TrainJob(dataset=tmp_path, index_dir=tmp_path, out=tmp_path / "m", rerank_weight=2.0)
    with pytest.raises(ValueError, match="--dev-rerank-top-n is the depth"):
        TrainJob(dataset=tmp_path, index_dir=tmp_path, out=tmp_path / "m", dev_split="dev", rerank_top_n=30)
    with pytest.raises(ValueError, match="at least 1"):
        TrainJob(dataset=tmp_path, index_dir=tmp_path, out=tmp_path / "m", rerank_top_n=0)
    title = PseudoQueryConfig("title")
    job = TrainJob(dataset=tmp_path, index_dir=tmp_path, out=tmp_path / "m", pseudo=title,
                   mining=MiningConfig(passage="text"))
    assert job.resolved_work_dir == tmp_path / "m.work"


# --- pseudo-queries (unit) -----------------------------------------------------------------------

PSEUDO_CORPUS = [
    Document("a", "Glacier retreat in the Alps",
             "Glacier retreat in the Alps has sped up. Meltwater feeds rivers in summer. "
             "Measurements since 1850 show the ice thinning by a metre a year on average."),
    Document("b", "Coffee roasting",
             "Roasting turns green beans brown. Longer roasts taste more bitter and less acidic. "
             "The Maillard reaction creates hundreds of aroma compounds during the roast."),
    Document("c", "", "a lowercase record without punctuation about the dispersion of radio waves in the "
             "ionosphere measured at night by a network of stations across the northern hemisphere"),
    Document("d", "Coffee roasting", "A second article with the same title but other words entirely about "
             "drum roasters and fluid bed roasters used in small shops."),
    Document("e", "Short", "Too short."),
]


@pytest.mark.unit
def test_title_pseudo_queries_take_the_title_out_of_the_passage():
    made = pseudo_queries(PSEUDO_CORPUS, PseudoQueryConfig("title", min_passage_words=8))
    by_doc = {q.positives[0].doc_id: q for q in made}
    assert set(by_doc) == {"a", "b", "d"}  # c has no title, e is too short
    glacier = by_doc["a"]
    assert glacier.text == "Glacier retreat in the Alps"
    assert "glacier retreat in the alps" not in glacier.positives[0].passage.lower()
    assert glacier.positives[0].passage.startswith("has sped up.")
    assert glacier.excluded == {"a"}
    # a document sharing the title answers the query as well, so it is never a negative
    assert by_doc["b"].never_negative == {"b", "d"}
    assert PseudoQueryConfig("title").passage_view == "text"


@pytest.mark.unit
def test_crop_pseudo_queries_cut_a_sentence_or_a_word_window_out():
    config = PseudoQueryConfig("crop", min_passage_words=8, seed=3)
    made = pseudo_queries(PSEUDO_CORPUS, config)
    assert made == pseudo_queries(list(reversed(PSEUDO_CORPUS)), config)  # deterministic
    by_doc = {q.positives[0].doc_id: q for q in made}
    assert {"a", "b", "c"} <= set(by_doc) and "e" not in by_doc
    for doc in PSEUDO_CORPUS:
        if doc.id not in by_doc:
            continue
        query = by_doc[doc.id]
        passage = query.positives[0].passage
        assert query.text not in passage
        assert query.text in doc.text
        if doc.title:
            assert passage.startswith(doc.title)  # crop keeps the title: the passage is served as body
    assert by_doc["a"].text in split_sentences(PSEUDO_CORPUS[0].text)
    # tokenised lower-case text (MEDLINE) ends its sentences with a free-standing " . "
    assert split_sentences("fetal plasma glucose . correlations were found . the end") == [
        "fetal plasma glucose .", "correlations were found .", "the end"]
    assert 8 <= len(by_doc["c"].text.split()) <= 16  # no sentence punctuation: a word window
    assert PseudoQueryConfig("crop").passage_view == "body"
    limited = pseudo_queries(PSEUDO_CORPUS, PseudoQueryConfig("crop", min_passage_words=8, limit=2))
    assert len(limited) == 2 and {q.id for q in limited} <= {q.id for q in made}


@pytest.mark.unit
def test_dev_pseudo_queries_are_second_crops_of_training_documents():
    config = PseudoQueryConfig("crop", min_passage_words=8, seed=3)
    train = pseudo_queries(PSEUDO_CORPUS, config)
    with_dev, dev = split_pseudo_queries(PSEUDO_CORPUS, replace(config, dev=2))
    assert with_dev == train  # asking for a dev split changes nothing about training
    assert len(dev.queries) == 2 and split_pseudo_queries(PSEUDO_CORPUS, replace(config, dev=2))[1] == dev
    trained = {q.positives[0].doc_id: q for q in train}
    sources = {d.id: d for d in PSEUDO_CORPUS}
    for query in dev.queries:
        doc_id = query.positives[0].doc_id
        indexed = dev.documents[doc_id]
        assert doc_id in trained and query.text in sources[doc_id].text
        # another cut than the trained one: the dev document lacks the dev text, keeps the trained
        assert query.text not in indexed.text and trained[doc_id].text in indexed.text
        assert indexed.title == sources[doc_id].title and query.positives[0].passage == indexed.body
    # only training documents give dev queries: with one training query, one dev query at most
    (only,) = pseudo_queries(PSEUDO_CORPUS, replace(config, limit=1))
    _, one = split_pseudo_queries(PSEUDO_CORPUS, replace(config, limit=1, dev=1))
    assert list(one.documents) == [only.positives[0].doc_id]
    with pytest.raises(ValueError, match="only 1 training documents"):
        split_pseudo_queries(PSEUDO_CORPUS, replace(config, limit=1, dev=2))
    with pytest.raises(ValueError, match="needs crop queries"):
        PseudoQueryConfig("title", dev=5)


@pytest.mark.unit
def test_pseudo_dev_folder_is_the_corpus_with_dev_text_cut_and_loads_as_a_judged_split(tmp_path):
    from jobs.cli import main
    from jobs.pseudo_dev import write_pseudo_dev

    records = [{"_id": d.id, "title": d.title, "text": d.text} for d in PSEUDO_CORPUS]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", records)
    _, dev = split_pseudo_queries(PSEUDO_CORPUS, PseudoQueryConfig("crop", min_passage_words=8, dev=2))
    dataset = write_pseudo_dev(corpus, dev, tmp_path / "dev")
    written = [json.loads(line) for line in (tmp_path / "dev" / "corpus.jsonl").open()]
    assert [r["_id"] for r in written] == [r["_id"] for r in records]  # every document, in order
    for original, copy in zip(records, written, strict=True):
        if original["_id"] in dev.documents:
            assert copy["text"] == dev.documents[original["_id"]].text != original["text"]
        else:
            assert copy == original
    judged = dataset.load("dev")
    assert judged.qrels == {q.id: {q.positives[0].doc_id: 1} for q in dev.queries}
    assert judged.queries == {q.id: q.text for q in dev.queries}
    before = (tmp_path / "dev" / "corpus.jsonl").read_bytes()
    write_pseudo_dev(corpus, dev, tmp_path / "dev")  # a rerun writes the same bytes: its index is reused
    assert (tmp_path / "dev" / "corpus.jsonl").read_bytes() == before
    # `bertsearch pseudo-dev` writes the same folder for the default crop settings
    _, default = split_pseudo_queries(PSEUDO_CORPUS, PseudoQueryConfig("crop", dev=1))
    assert main(["pseudo-dev", str(tmp_path), "--out", str(tmp_path / "cli"), "--queries", "1"]) == 0
    assert BeirDataset(tmp_path / "cli").load("dev").queries == {q.id: q.text for q in default.queries}


# --- mining over a real (tiny) index -------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_index(tmp_path_factory, tiny_bert_dir, corpus_records):
    folder = tmp_path_factory.mktemp("train-index")
    source = write_jsonl(folder / "corpus.jsonl", corpus_records)
    build_index(source, folder / "index", Embedder(tiny_bert_dir).load(), progress=False)
    return folder / "index"


@pytest.mark.unit
def test_mined_negatives_never_include_a_judged_relevant_document(toy_index):
    queries = {"q1": "programming language garbage collection", "q2": "brewed drinks", "q3": "animals"}
    qrels = {
        "q1": {"python": 1, "rust": 1, "cats": 0},  # cats judged non-relevant: may be a negative
        "q2": {"tea": 1, "coffee": 2},
        "q3": {"cats": 1, "dogs": 1, "volcano": 0},
    }
    pipeline = open_pipeline(toy_index)
    try:
        report = mine_groups(pipeline, queries_from_qrels(queries, qrels), MiningConfig(depth=8, negatives=4))
    finally:
        pipeline.close()
    assert len(report.groups) == 6  # one group per (query, relevant document)
    for group in report.groups:
        relevant = {d for d, grade in qrels[group.query_id].items() if grade > 0}
        assert group.doc_ids[0] in relevant and group.size == 5
        assert not relevant & set(group.doc_ids[1:])
        assert group.passages[0].startswith(  # the positive passage is the indexed body
            {"python": "The Python", "rust": "Rust", "tea": "Green tea", "coffee": "Coffee",
             "cats": "Domestic cats", "dogs": "Dogs"}[group.doc_ids[0]]
        )
    again = open_pipeline(toy_index)
    try:
        repeat = mine_groups(again, queries_from_qrels(queries, qrels), MiningConfig(depth=8, negatives=4))
    finally:
        again.close()
    assert repeat.groups == report.groups  # seeded sampling


@pytest.mark.unit
def test_mining_for_pseudo_queries_excludes_the_source_and_hides_titles(toy_index, corpus_records):
    docs = [Document(r["_id"], r["title"], r["text"]) for r in corpus_records]
    config = PseudoQueryConfig("title", min_query_words=1, min_passage_words=5)
    queries = pseudo_queries(docs, config)
    pipeline = open_pipeline(toy_index)
    try:
        mining = MiningConfig(depth=8, negatives=3, passage=config.passage_view)
        report = mine_groups(pipeline, queries, mining)
    finally:
        pipeline.close()
    by_id = {d.id: d for d in docs}
    assert len(report.groups) == len(queries) == len(docs)
    for group in report.groups:
        source = group.doc_ids[0]
        assert source not in group.doc_ids[1:]
        assert all(p == by_id[d].text for d, p in zip(group.doc_ids[1:], group.passages[1:], strict=True))


@pytest.mark.unit
def test_a_query_with_only_relevant_candidates_is_skipped_and_reported(toy_index):
    everything = {r: 1 for r in TOY_QUERIES}
    query = TrainingQuery("all", "anything at all", tuple(Positive(d) for d in sorted(everything)))
    pipeline = open_pipeline(toy_index)
    try:
        report = mine_groups(pipeline, [query], MiningConfig(depth=8, negatives=2))
    finally:
        pipeline.close()
    assert report.groups == [] and report.skipped[0][0] == "all"


# --- Ray Train on 2 CPU workers (a tiny BERT, a few steps) ----------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    import ray

    from jobs.train import start_ray

    started_here = not ray.is_initialized()
    start_ray(num_cpus=2)
    yield
    if started_here:
        ray.shutdown()


def _tiny_config(tiny_bert_dir, **changes) -> TrainConfig:
    settings = dict(base_model=str(tiny_bert_dir), max_length=64, epochs=3, groups_per_batch=2,
                    learning_rate=1e-2, warmup_ratio=0.1, precision="fp32", seed=7, log_every=1000)
    settings.update(changes)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def uninterrupted(local_ray, tmp_path_factory, tiny_bert_dir, corpus_records):
    from jobs.train import RayScaling, fit

    folder = tmp_path_factory.mktemp("train-run")
    scaling = RayScaling(workers=2, cpus_per_worker=1)
    return fit(toy_groups(corpus_records), _tiny_config(tiny_bert_dir), scaling,
               out=folder / "model", work_dir=folder / "work")


@pytest.mark.integration
def test_two_worker_run_lowers_the_loss_and_writes_a_loadable_reranker(uninterrupted, corpus_records):
    history = uninterrupted.history
    assert [e["epoch"] for e in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert all(e["steps"] == 4 for e in history)  # 16 groups / (2 workers x 2 groups)
    model_dir = uninterrupted.model_dir
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert meta["best_epoch"] == 3 and meta["scaling"]["workers"] == 2
    assert meta["hardware"]["backend"] == "gloo"
    assert len(meta["epochs"]) == 3 and meta["hyperparameters"]["loss"] == "listwise"
    # it loads back as a trained reranker (a head is present) and ranks the toy positives first
    reranker = CrossEncoder(model_dir, max_length=64).load()
    groups = toy_groups(corpus_records)
    wins = sum(int(np.argmax(reranker.score(g.query, list(g.passages))) == 0) for g in groups)
    assert wins >= 12, f"the trained reranker put the positive first in only {wins}/16 toy groups"


@pytest.mark.integration
def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_weights(
    uninterrupted, local_ray, tmp_path, tiny_bert_dir, corpus_records
):
    from ray.train import TrainingFailedError

    from jobs.train import RayScaling, fit

    config = _tiny_config(tiny_bert_dir, crash_after_epoch=1)
    args = (toy_groups(corpus_records), config, RayScaling(workers=2, cpus_per_worker=1))
    with pytest.raises(TrainingFailedError):
        fit(*args, out=tmp_path / "model", work_dir=tmp_path / "work")
    assert (tmp_path / "work" / "ray" / "epoch-001" / "model").is_dir()
    assert not (tmp_path / "model").exists()
    resumed = fit(*args, out=tmp_path / "model", work_dir=tmp_path / "work")  # the same command again
    assert [e["epoch"] for e in resumed.history] == [1, 2, 3]
    assert [e["train_loss"] for e in resumed.history] == pytest.approx(
        [e["train_loss"] for e in uninterrupted.history], abs=1e-6
    )
    from safetensors.torch import load_file

    expected = load_file(uninterrupted.model_dir / "model.safetensors")
    got = load_file(tmp_path / "model" / "model.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6)


@pytest.mark.integration
def test_average_epochs_writes_the_mean_of_a_runs_checkpoints_as_a_reranker(uninterrupted, tmp_path, capsys):
    from safetensors.torch import load_file

    from jobs.cli import main

    run = uninterrupted.model_dir
    work = run.parent / "work"
    out = tmp_path / "soup"
    args = ["average-epochs", str(run), "--epochs", "2,3", "--work-dir", str(work), "--out", str(out)]
    assert main(args) == 0
    checkpoints = [work / "ray" / f"epoch-{e:03d}" / "model" for e in (2, 3)]
    epochs = [load_file(folder / "model.safetensors") for folder in checkpoints]
    soup = load_file(out / "model.safetensors")
    assert soup.keys() == epochs[0].keys()
    for name, tensor in soup.items():
        expected = (epochs[0][name].float() + epochs[1][name].float()) / 2
        assert torch.allclose(tensor.float(), expected, atol=1e-6), name
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["averaged_epochs"]["epochs"] == [2, 3] and meta["max_length"] == 64
    assert "rerank_weight" not in meta  # tuned for one epoch, not for the mean
    # it loads as a reranker, and scores as neither epoch does
    query, passage = "do cats purr", "Cats are small carnivorous mammals kept as pets; they purr."
    scores = [CrossEncoder(f, max_length=64).load().score(query, [passage])[0] for f in [out, *checkpoints]]
    assert np.isfinite(scores[0]) and scores[0] not in scores[1:]
    assert "tune-rerank-weight" in capsys.readouterr().out
    # what cannot be averaged is refused with the reason
    assert main([*args[:3], "2,7", *args[4:]]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint of epoch 7" in err and "epoch-003" in err


# --- the command, end to end (mining, Ray, dev evaluation through `bertsearch eval` code) ----------


@pytest.mark.slow
def test_train_command_mines_trains_evaluates_dev_and_writes_model_dir(
    local_ray, tmp_path, tiny_bert_dir, corpus_records
):
    from jobs.cli import main

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
            "--epochs", "2", "--depth", "8", "--negatives", "3", "--lr", "1e-2", "--max-length", "64",
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
    from jobs.cli import main

    data, records = unjudged_corpus
    out = tmp_path / "model"
    code = main(["train", str(data), "--pseudo-queries", "crop", "--index-dir", str(tmp_path / "index"),
                 "--out", str(out), "--base-model", str(tiny_bert_dir), "--workers", "2", "--cpus-per-worker",
                 "1", "--epochs", "1", "--groups-per-batch", "1", "--depth", "8", "--negatives", "3",
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


@pytest.mark.integration
def test_a_local_run_asking_for_more_cpus_than_ray_has_is_refused_not_left_waiting(local_ray):
    from jobs.train import RayScaling, check_resources

    check_resources(RayScaling(workers=4, cpus_per_worker=0.5))
    with pytest.raises(ValueError, match="4 workers need 4 CPUs"):
        check_resources(RayScaling(workers=4, cpus_per_worker=1))
