"""``bertsearch pretrain`` on Ray Train (2 CPU workers, a tiny BERT, a few steps): the folder it
writes, a killed run resumed to the same weights, a finished run rerun, and the user's mistakes."""

from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stdout
from dataclasses import replace

import pytest
import torch

from bertsearch.jobs.cli import main
from support.files import write_jsonl

TOPICS = ["glaciers", "volcanoes", "coffee", "tea", "python", "rust", "cats", "dogs", "rivers", "forests"]
SETTINGS = dict(max_length=32, epochs=2, batch_size=4, learning_rate=1e-3, precision="fp32", seed=7,
                max_steps_per_epoch=3)  # fmt: skip
FLAGS = ["--max-length", "32", "--epochs", "2", "--batch-size", "4", "--lr", "1e-3", "--precision", "fp32",
         "--seed", "7", "--max-steps-per-epoch", "3", "--workers", "2", "--cpus-per-worker", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory, corpus_records):
    """A BEIR folder of 20 documents (one of them long enough for several chunks) and one bad line."""
    records = [*corpus_records]
    for n, topic in enumerate(TOPICS):
        text = f"Field notes about {topic}, written down as they were observed."
        records.append({"_id": f"note-{n}", "title": f"Notes on {topic}", "text": text})
    records.append(
        {
            "_id": "survey",
            "title": "A long survey",
            "text": " ".join(f"{t} are described in section {i}." for i, t in enumerate(TOPICS * 6)),
        }
    )
    records.append({"_id": "reading", "title": "Further reading", "text": "Books about every topic above."})
    folder = tmp_path_factory.mktemp("pretrain-corpus")
    write_jsonl(folder / "corpus.jsonl", [*records[:5], "{not json", *records[5:]])
    assert len(records) == 20
    return folder


@pytest.fixture(scope="module")
def pretrained(local_ray, tmp_path_factory, corpus_dir, tiny_bert_dir):
    """One uninterrupted run through the command line: (OUT, exit status, what it printed)."""
    out = tmp_path_factory.mktemp("pretrain-run") / "mlm"
    printed = io.StringIO()
    with redirect_stdout(printed):
        code = main(
            ["pretrain", str(corpus_dir), "--out", str(out), "--base-model", str(tiny_bert_dir), *FLAGS]
        )
    return out, code, printed.getvalue()


@pytest.mark.slow
def test_two_workers_pretrain_a_folder_that_fine_tuning_loads_with_the_trained_encoder(
    pretrained, tiny_bert_dir
):
    from safetensors.torch import load_file
    from transformers import BertForMaskedLM, BertModel

    from bertsearch.ranker.cross_encoder import CrossEncoder, UntrainedRerankerError

    out, code, printed = pretrained
    assert code == 0
    assert "epoch 2: mlm_loss=" in printed and f"next: bertsearch train DATASET --base-model {out}" in printed
    record = json.loads((out / "pretraining.json").read_text())
    assert [e["epoch"] for e in record["epochs"]] == [1, 2] and record["epoch"] == 2
    assert all(
        math.isfinite(e["mlm_loss"]) and e["steps"] == 3 and e["tokens_per_s"] > 0 for e in record["epochs"]
    )
    assert record["data"]["documents"] == 20 and record["data"]["chunks"] > 20  # the survey is cut in several
    assert record["data"]["bad_lines"] == 1 and "not valid JSON" in record["data"]["bad_line_examples"][0]
    assert record["hardware"]["backend"] == "gloo" and record["scaling"]["workers"] == 2
    assert record["hyperparameters"]["mlm_probability"] == 0.15 and record["base_model"] == str(tiny_bert_dir)
    # a masked-LM checkpoint whose encoder moved away from the base weights
    mlm = BertForMaskedLM.from_pretrained(out)
    base = BertModel.from_pretrained(tiny_bert_dir)
    query = mlm.bert.encoder.layer[0].attention.self.query.weight
    assert not torch.allclose(query, base.encoder.layer[0].attention.self.query.weight)
    assert "bert.pooler.dense.weight" in load_file(out / "model.safetensors")
    # the cross-encoder takes its encoder from it (and the base's pooler); its relevance head is new
    encoder = CrossEncoder(out, allow_untrained_head=True, max_length=32).load()
    torch.testing.assert_close(
        encoder.model.bert.encoder.layer[0].attention.self.query.weight, query, rtol=0, atol=0
    )
    torch.testing.assert_close(
        encoder.model.bert.pooler.dense.weight, base.pooler.dense.weight, rtol=0, atol=0
    )
    with pytest.raises(UntrainedRerankerError):
        CrossEncoder(out).load()  # not a reranker: serving refuses it


@pytest.mark.slow
def test_a_killed_pretraining_resumes_to_the_same_weights_and_a_finished_one_is_not_trained_again(
    pretrained, local_ray, tmp_path, corpus_dir, tiny_bert_dir
):
    from ray.train import TrainingFailedError
    from safetensors.torch import load_file

    from bertsearch.jobs.training.pretrain import PretrainJob, run
    from bertsearch.jobs.training.ray_fit import RayScaling
    from bertsearch.ranker.training.mlm import PretrainConfig

    config = PretrainConfig(base_model=str(tiny_bert_dir), **SETTINGS)
    job = PretrainJob(corpus=corpus_dir, out=tmp_path / "mlm", train=replace(config, kill_after_epoch=1),
                      scaling=RayScaling(workers=2, cpus_per_worker=1))  # fmt: skip
    with pytest.raises(TrainingFailedError):
        run(job)
    assert (tmp_path / "mlm.work" / "ray" / "epoch-001" / "model").is_dir()
    assert not (tmp_path / "mlm").exists()
    resumed = run(replace(job, train=config))  # the same command again
    uninterrupted = json.loads((pretrained[0] / "pretraining.json").read_text())["epochs"]
    assert [e["epoch"] for e in resumed.history] == [1, 2]
    assert [e["mlm_loss"] for e in resumed.history] == pytest.approx(
        [e["mlm_loss"] for e in uninterrupted], abs=1e-6
    )
    expected, got = (
        load_file(pretrained[0] / "model.safetensors"),
        load_file(tmp_path / "mlm" / "model.safetensors"),
    )
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6)
    # a finished run is published again from its last checkpoint, without training
    again = run(replace(job, train=config))
    assert (
        again.history == resumed.history and again.record["train_seconds"] == resumed.record["train_seconds"]
    )
    # another setting is refused, naming it, rather than resuming the old run's checkpoints
    with pytest.raises(ValueError, match=r"mlm_probability \(0\.15 then, 0\.2 now\)"):
        run(replace(job, train=replace(config, mlm_probability=0.2)))


@pytest.mark.unit
def test_pretrain_user_mistakes_exit_2_with_a_one_line_message(tmp_path, capsys, tiny_bert_dir):
    def error(*args: str) -> str:
        assert (
            main(["pretrain", *args, "--out", str(tmp_path / "out"), "--base-model", str(tiny_bert_dir)]) == 2
        )
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bertsearch pretrain: error: ")
        return lines[0]

    assert "does not exist" in error(str(tmp_path / "missing"))
    write_jsonl(tmp_path / "bad.jsonl", ["{not json", {"_id": "x", "title": "", "text": ""}])
    assert "no document with text" in error(str(tmp_path / "bad.jsonl"))
    write_jsonl(tmp_path / "few.jsonl", [{"_id": "a", "text": "one short document"}])
    assert "1 chunks cannot fill one step of 16" in error(str(tmp_path / "few.jsonl"))
    assert "--limit must be at least 1" in error(str(tmp_path / "few.jsonl"), "--limit", "0")
    assert "more than the 512 positions" in error(str(tmp_path / "few.jsonl"), "--max-length", "1024")
    assert not (tmp_path / "out.work").exists()  # nothing was started
