"""What a training run refuses before it starts, and the groups it keeps for resuming."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bertsearch.ranker.training.examples import (
    MiningConfig,
)
from bertsearch.ranker.training.loop import TrainConfig
from bertsearch.ranker.training.pseudo_queries import (
    PseudoQueryConfig,
)
from support.training_data import toy_groups


@pytest.mark.unit
def test_best_epoch_takes_the_highest_dev_metric_and_the_earliest_on_ties():
    from bertsearch.jobs.training.ray_fit import best_epoch

    history = [{"epoch": e, "dev_ndcg@10": v} for e, v in ((1, 0.5), (2, 0.7), (3, 0.7))]
    assert best_epoch(history, "dev_ndcg@10") == 2
    assert best_epoch(history, None) == 3
    with pytest.raises(ValueError, match="dev_mrr@10"):
        best_epoch(history, "dev_mrr@10")


@pytest.mark.unit
def test_saved_groups_come_back_and_other_settings_are_refused(tmp_path, corpus_records):
    from bertsearch.jobs.training.groups import load_groups, save_groups

    groups = toy_groups(corpus_records)
    info = {"dataset": "toy", "mining": {"depth": 8}}
    assert load_groups(tmp_path, info) is None
    save_groups(tmp_path, groups, info)
    assert load_groups(tmp_path, info) == groups
    with pytest.raises(ValueError, match="mining"):
        load_groups(tmp_path, {"dataset": "toy", "mining": {"depth": 50}})


@pytest.mark.unit
def test_train_job_refuses_title_queries_with_titled_negatives(tmp_path):
    from bertsearch.jobs.training.job import TrainJob

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


@pytest.mark.unit
def test_a_dev_split_named_test_is_refused_unless_allowed(tmp_path):
    from bertsearch.jobs.training.job import TrainJob

    with pytest.raises(ValueError, match="choosing on the test split.*--allow-test-split"):
        TrainJob(dataset=tmp_path, index_dir=tmp_path, out=tmp_path / "m", dev_split="test")
    with pytest.raises(ValueError, match="choosing on the test split"):
        TrainJob(dataset=tmp_path, index_dir=tmp_path, out=tmp_path / "m", dev_split=" Test ")
    allowed = TrainJob(dataset=tmp_path, index_dir=tmp_path, out=tmp_path / "m", dev_split="test",
                       allow_test_split=True)
    assert allowed.dev_split == "test"


@pytest.mark.unit
def test_resuming_a_run_with_other_hyperparameters_is_refused_naming_them(tmp_path):
    from bertsearch.jobs.training.ray_fit import RayScaling, check_run_settings

    config = TrainConfig(learning_rate=2e-5, epochs=2)
    check_run_settings(tmp_path, config, RayScaling(workers=2), "ndcg@10")  # records the settings
    check_run_settings(tmp_path, config, RayScaling(workers=2), "ndcg@10")  # the same: resumes
    # logging, how often checkpoints are written and the test-only kill hooks are not hyper-parameters
    hooks = replace(config, log_every=5, kill_after_epoch=1, checkpoint_minutes=0.5, kill_after_step=3)
    check_run_settings(tmp_path, hooks, RayScaling(workers=2), "ndcg@10")
    with pytest.raises(ValueError, match=r"learning_rate \(2e-05 then, 0\.0001 now\)") as refused:
        check_run_settings(tmp_path, replace(config, learning_rate=1e-4), RayScaling(workers=2), "ndcg@10")
    assert "epochs" not in str(refused.value) and "--work-dir" in str(refused.value)
    with pytest.raises(ValueError, match=r"workers \(2 then, 1 now\)"):
        check_run_settings(tmp_path, config, RayScaling(workers=1), "ndcg@10")
