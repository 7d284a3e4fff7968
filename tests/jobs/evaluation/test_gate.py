"""The promotion gate and `bertsearch reranker`: gate a candidate against what is served, record
the decision in the version, promote or refuse, force, roll back."""

from __future__ import annotations

import json
import shutil

import pytest

from bertsearch.jobs.datasets.beir import BeirDataset
from bertsearch.jobs.evaluation.gate import GateConfig, promote
from bertsearch.jobs.indexing.reuse import ensure_index
from bertsearch.ranker.model_dir import ModelRecord
from bertsearch.ranker.registry import RerankerRegistry
from bertsearch.ranker.training.clicks import ClickRule
from support.datasets import write_dataset

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def judged(tmp_path_factory, tiny_bert_dir, corpus_records):
    """A judged dev split over the toy corpus, indexed by the tiny BERT (its hybrid order is the
    baseline; the tiny random cross-encoder reranks it worse)."""
    root = tmp_path_factory.mktemp("gate")
    dataset = write_dataset(root / "ds", corpus_records, splits=("dev", "test"))
    ensure_index(BeirDataset(dataset), root / "index", model=tiny_bert_dir, progress=False)
    return dataset, root / "index"


def reranker(folder, source, weight: float):
    """The tiny random cross-encoder served at ``weight`` (0: hybrid's order, 1: its own)."""
    shutil.copytree(source, folder)
    ModelRecord(base_model="tiny", max_length=64, rerank_weight=weight, rerank_top_n=8).write(folder)
    return folder


def test_a_candidate_worse_than_hybrid_is_refused_recorded_and_not_served(
    judged, tmp_path, tiny_cross_encoder_dir
):
    dataset, index = judged
    registry = RerankerRegistry(tmp_path / "registry")
    noisy = reranker(tmp_path / "noisy", tiny_cross_encoder_dir, 1.0)
    version, report = promote(registry, noisy, GateConfig(dataset, index, tune_folds=0))
    assert not report["accepted"] and report["verdict"].startswith("refused")
    assert report["incumbent"] == "hybrid" and report["queries"] == 6
    assert report["delta"] == pytest.approx(report["candidate_mean"] - report["incumbent_mean"], abs=1e-3)
    assert report["delta"] < 0 and report["wins_ties_losses"]["losses"] >= 1
    assert registry.current() is None  # still hybrid
    assert json.loads((version.path / "gate.json").read_text())["verdict"] == report["verdict"]
    assert (registry.root / "gates" / version.name / "candidate" / "report.md").is_file()
    # --force serves it anyway, and says so
    version, report = promote(registry, version.name, GateConfig(dataset, index, tune_folds=0), force=True)
    assert registry.current_name() == version.name and report["forced"] is True
    assert registry.history()[-1]["forced"] is True


def test_a_candidate_that_ties_the_incumbent_is_not_better_by_the_margin(
    judged, tmp_path, tiny_cross_encoder_dir
):
    dataset, index = judged
    registry = RerankerRegistry(tmp_path / "registry")
    same_as_hybrid = reranker(tmp_path / "w0", tiny_cross_encoder_dir, 0.0)  # blends to the fused order
    _, report = promote(registry, same_as_hybrid, GateConfig(dataset, index, tune_folds=0))
    assert report["delta"] == 0 and not report["accepted"] and "not above the margin" in report["verdict"]


def test_the_cli_promotes_a_better_candidate_over_the_served_one_and_rolls_back(
    judged, tmp_path, tiny_cross_encoder_dir, capsys
):
    from bertsearch.jobs.cli import main

    dataset, index = judged
    root = tmp_path / "registry"
    registry = RerankerRegistry(root)
    noisy = registry.add(reranker(tmp_path / "noisy", tiny_cross_encoder_dir, 1.0)).name
    registry.record_gate(noisy, {"accepted": True, "verdict": "accepted: for the test"})
    registry.promote(noisy)
    better = reranker(tmp_path / "w0", tiny_cross_encoder_dir, 0.0)  # hybrid's order beats the noisy one
    gate = ["--dataset", str(dataset), "--index-dir", str(index), "--tune-folds", "0", "--split", "dev"]
    assert main(["reranker", "promote", str(better), "--registry", str(root), *gate]) == 0
    promoted = registry.current_name()
    assert promoted != noisy and registry.get(promoted).manifest["parent"] == noisy
    assert registry.get(promoted).gate["incumbent"].endswith(noisy)
    assert main(["reranker", "list", "--registry", str(root)]) == 0
    listing = capsys.readouterr().out
    assert f"* {promoted}" in listing and "accepted" in listing
    assert main(["reranker", "rollback", "--registry", str(root)]) == 0
    assert registry.current_name() == noisy
    # the gate is a choice: the test split is refused unless asked for
    assert main(["reranker", "promote", promoted, "--registry", str(root), *gate[:-1], "test"]) == 2


def logged_clicks(path, index, dataset) -> None:
    """Two sessions per judged query of the toy set, each clicking every relevant hit served."""
    from datetime import UTC, datetime

    from bertsearch.api.feedback.records import Event, QueryRecord, ServedHit
    from bertsearch.api.feedback.sqlite_log import SQLiteLog
    from bertsearch.ranker.factory import open_pipeline
    from bertsearch.ranker.pipeline import PipelineConfig

    judged = BeirDataset(dataset).load("dev")
    pipeline = open_pipeline(index, config=PipelineConfig(rerank=False))
    log = SQLiteLog(path)
    now = datetime.now(UTC)
    for query_id, text in judged.queries.items():
        hits = pipeline.search(text, top_k=8).hits
        served = tuple(ServedHit(n, h.id, h.score) for n, h in enumerate(hits, 1))
        for session in range(2):
            qid = f"{query_id}-{session}"
            log.log_query(QueryRecord(qid, text, now, served, "v1"))
            log.add_events([Event(qid, "click", h.id, n, now) for n, h in enumerate(hits, 1)
                            if judged.qrels[query_id].get(h.id, 0) > 0])  # fmt: skip
    log.close()
    pipeline.close()


def test_without_judgments_the_gate_judges_on_held_out_clicks(judged, tmp_path, tiny_cross_encoder_dir):
    dataset, index = judged
    clicks = tmp_path / "feedback.sqlite3"
    logged_clicks(clicks, index, dataset)
    on_clicks = GateConfig(None, index, feedback=clicks)
    registry = RerankerRegistry(tmp_path / "registry")
    _, refused = promote(registry, reranker(tmp_path / "noisy", tiny_cross_encoder_dir, 1.0), on_clicks)
    assert not refused["accepted"] and refused["delta"] < 0 and refused["queries"] == 6
    noisy = registry.versions()[0].name
    registry.promote(noisy, forced=True)
    better = reranker(tmp_path / "w0", tiny_cross_encoder_dir, 0.0)
    version, accepted = promote(registry, better, on_clicks)
    assert accepted["accepted"] and accepted["delta"] > 0 and registry.current_name() == version.name
    assert accepted["config"]["click_rule"]["min_clicks"] == 2  # the report says how clicks judged
    strict = GateConfig(None, index, feedback=clicks, click_rule=ClickRule(confidence=0.95))
    with pytest.raises(ValueError, match="no held-out session has clicks that judge a document"):
        promote(registry, better, strict)  # two clicks in two sessions are too little evidence at 0.95
    with pytest.raises(ValueError, match="judged --dataset or on held-out logged sessions"):
        GateConfig(dataset, index, feedback=clicks)


def test_cross_fitting_scores_every_query_at_a_point_tuned_without_it(
    judged, tmp_path, tiny_cross_encoder_dir
):
    dataset, index = judged
    registry = RerankerRegistry(tmp_path / "registry")
    noisy = reranker(tmp_path / "noisy", tiny_cross_encoder_dir, 1.0)
    tuned_on_dev = {"dataset": str(dataset.resolve()), "split": "dev", "weight": 1.0}  # tune-rerank-weight's
    record = ModelRecord(max_length=64, rerank_weight=1.0, rerank_top_n=8, rerank_weight_tuning=tuned_on_dev)
    record.write(noisy)
    _, report = promote(registry, noisy, GateConfig(dataset, index, tune_folds=3))
    assert report["cross_fitted"] is True and report["config"]["tune_folds"] == 3 and report["queries"] == 6
    assert not report["accepted"]  # a random reranker: tuning on two folds does not carry to the third
    untuned = reranker(tmp_path / "untuned", tiny_cross_encoder_dir, 1.0)  # no record of where it was tuned
    _, report = promote(RerankerRegistry(tmp_path / "other"), untuned, GateConfig(dataset, index))
    assert report["cross_fitted"] is False
