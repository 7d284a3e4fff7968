"""Ray Train on 2 CPU workers (a tiny BERT, a few steps): a run, a killed run resumed, epoch averaging."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bertsearch.ranker.cross_encoder import CrossEncoder
from bertsearch.ranker.training.loop import TrainConfig
from support.training_data import toy_groups

# --- Ray Train on 2 CPU workers (a tiny BERT, a few steps) ----------------------------------------


def _tiny_config(tiny_bert_dir, **changes) -> TrainConfig:
    settings = dict(base_model=str(tiny_bert_dir), max_length=64, epochs=3, groups_per_batch=2,
                    learning_rate=1e-2, warmup_ratio=0.1, precision="fp32", seed=7, log_every=1000)
    settings.update(changes)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def uninterrupted(local_ray, tmp_path_factory, tiny_bert_dir, corpus_records):
    from bertsearch.jobs.training.ray_fit import RayScaling, fit

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

    from bertsearch.jobs.training.ray_fit import RayScaling, fit

    config = _tiny_config(tiny_bert_dir, kill_after_epoch=1)
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
    _assert_same_weights(tmp_path / "model", uninterrupted.model_dir)


@pytest.mark.integration
def test_a_run_killed_within_an_epoch_goes_on_from_its_last_step_to_the_same_weights(
    uninterrupted, local_ray, tmp_path, tiny_bert_dir, corpus_records
):
    from ray.train import TrainingFailedError

    from bertsearch.jobs.training.ray_fit import RayScaling, fit

    # a mid-epoch checkpoint after every step; the workers die after step 6 of 12 (epoch 2, step 2)
    config = _tiny_config(tiny_bert_dir, checkpoint_minutes=1e-9, kill_after_step=6)
    args = (toy_groups(corpus_records), config, RayScaling(workers=2, cpus_per_worker=1))
    work = tmp_path / "work"
    with pytest.raises(TrainingFailedError):
        fit(*args, out=tmp_path / "model", work_dir=work)
    assert [p.name for p in (work / "progress").iterdir()] == ["epoch-002-step-000002"]  # older ones removed
    assert (work / "ray" / "epoch-001").is_dir() and not (work / "ray" / "epoch-002").exists()
    resumed = fit(*args, out=tmp_path / "model", work_dir=work)  # the same command again
    assert [e.get("resumed_at_step") for e in resumed.history] == [None, 2, None]
    # each worker's loss sums went on from the checkpoint: the epoch means are the uninterrupted ones
    assert [e["train_loss"] for e in resumed.history] == pytest.approx(
        [e["train_loss"] for e in uninterrupted.history], abs=1e-6
    )
    _assert_same_weights(tmp_path / "model", uninterrupted.model_dir)
    assert list((work / "progress").iterdir()) == []  # each epoch's checkpoint replaced its mid-epoch ones


def _assert_same_weights(got_dir, expected_dir) -> None:
    from safetensors.torch import load_file

    expected = load_file(expected_dir / "model.safetensors")
    got = load_file(got_dir / "model.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6)


@pytest.mark.integration
def test_average_epochs_writes_the_mean_of_a_runs_checkpoints_as_a_reranker(uninterrupted, tmp_path, capsys):
    from safetensors.torch import load_file

    from bertsearch.jobs.cli import main

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



@pytest.mark.integration
def test_a_local_run_asking_for_more_cpus_than_ray_has_is_refused_not_left_waiting(local_ray):
    from bertsearch.jobs.training.ray_fit import RayScaling, check_resources

    check_resources(RayScaling(workers=4, cpus_per_worker=0.5))
    with pytest.raises(ValueError, match="4 workers need 4 CPUs"):
        check_resources(RayScaling(workers=4, cpus_per_worker=1))
