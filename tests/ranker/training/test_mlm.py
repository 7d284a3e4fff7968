"""Masked-LM pre-training without Ray: chunking, seeded masking, the objective, an epoch, the folder."""

from __future__ import annotations

import math

import pytest
import torch

from bertsearch.indexer.documents import Document
from bertsearch.ranker.training.loop import Shard, make_optimizer
from bertsearch.ranker.training.mlm import (
    IGNORE_INDEX,
    MaskedLMObjective,
    PretrainConfig,
    batch_seed,
    chunk_documents,
    encoder_extras,
    load_mlm_model,
    mask_batch,
    masking,
    mlm_steps_per_epoch,
    run_mlm_epoch,
    save_mlm_model,
)

pytestmark = pytest.mark.unit

WORDS = "glaciers carve valleys as rivers of ice flow downhill under their own weight".split()
LONG = Document("long", "A long glacier survey", " ".join(WORDS[i % len(WORDS)] for i in range(400)))
SHORT = Document("short", "Tea", "Green tea is brewed from leaves.")


@pytest.fixture(scope="module")
def tokenizer(tiny_bert_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_bert_dir)


def test_chunks_cover_a_long_document_in_windows_of_max_length(tokenizer):
    chunks = chunk_documents([LONG, SHORT], tokenizer, max_length=32, batch_size=1)
    body = tokenizer(LONG.body, add_special_tokens=False)["input_ids"]
    assert len(body) > 400  # far beyond one window: it must not be truncated
    windows = [chunks[i].tolist() for i in range(len(chunks))]
    assert chunks.documents == 2 and len(windows) == math.ceil(len(body) / 30) + 1
    assert all(
        len(w) <= 32 and w[0] == tokenizer.cls_token_id and w[-1] == tokenizer.sep_token_id for w in windows
    )
    assert [t for w in windows[:-1] for t in w[1:-1]] == body  # every token once, in order
    assert windows[-1][1:-1] == tokenizer(SHORT.body, add_special_tokens=False)["input_ids"]
    assert chunks.tokens == sum(len(w) for w in windows)
    with pytest.raises(ValueError, match="no room"):
        chunk_documents([SHORT], tokenizer, max_length=2)


def test_masking_is_seeded_about_15_percent_and_labels_only_the_masked_tokens(tokenizer):
    chunks = chunk_documents([LONG] * 6, tokenizer, max_length=64)
    originals = [chunks[i].tolist() for i in range(len(chunks))]
    collator = masking(tokenizer, 0.15)
    first = mask_batch(collator, originals, seed=1)
    again = mask_batch(collator, originals, seed=1)
    other = mask_batch(collator, originals, seed=2)
    assert torch.equal(first["input_ids"], again["input_ids"]) and torch.equal(
        first["labels"], again["labels"]
    )
    assert not torch.equal(first["labels"], other["labels"])
    padded = torch.full_like(first["input_ids"], tokenizer.pad_token_id)
    for row, ids in enumerate(originals):
        padded[row, : len(ids)] = torch.tensor(ids)
    specials = torch.isin(padded, torch.tensor(tokenizer.all_special_ids))
    labelled = first["labels"] != IGNORE_INDEX
    assert not (labelled & specials).any()  # [CLS], [SEP] and padding are never masked
    share = float(labelled.sum()) / float((~specials).sum())
    assert 0.12 < share < 0.18, share
    assert torch.equal(first["labels"][labelled], padded[labelled])  # a label is the original token
    assert torch.equal(first["input_ids"][~labelled], padded[~labelled])  # unlabelled tokens are untouched
    as_mask = float((first["input_ids"][labelled] == tokenizer.mask_token_id).float().mean())
    assert 0.7 < as_mask < 0.9, as_mask  # BERT's 80/10/10 rule
    # masking runs on a forked generator: training's own randomness (dropout) is not moved
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    mask_batch(collator, originals[:2], seed=5)
    assert torch.equal(torch.rand(3), expected)
    seeds = {batch_seed(13, epoch, step, rank) for epoch in (1, 2) for step in range(5) for rank in (0, 1)}
    assert len(seeds) == 20


def test_pretrain_config_and_steps_refuse_what_cannot_run():
    for bad in (dict(mlm_probability=0.0), dict(mlm_probability=1.0), dict(batch_size=0), dict(max_length=8),
                dict(learning_rate=0), dict(precision="fp16")):  # fmt: skip
        with pytest.raises(ValueError):
            PretrainConfig(**bad)
    with pytest.raises(ValueError, match="7 chunks cannot fill one step of 8"):
        mlm_steps_per_epoch(7, workers=2, config=PretrainConfig(batch_size=4))
    assert mlm_steps_per_epoch(40, workers=2, config=PretrainConfig(batch_size=4, max_steps_per_epoch=3)) == 3
    hooks = PretrainConfig(log_every=3, kill_after_epoch=1).hyperparameters()
    assert hooks == PretrainConfig().hyperparameters()  # logging and the test hook decide no weights


def test_the_objective_is_the_models_own_mlm_loss_on_the_masked_positions(tiny_bert_dir, tokenizer):
    model, initialised = load_mlm_model(tiny_bert_dir)
    assert any(name.startswith("cls.predictions") for name in initialised)  # the tiny BERT has no MLM head
    model.eval()
    chunks = chunk_documents([LONG, SHORT], tokenizer, max_length=48)
    batch = mask_batch(masking(tokenizer, 0.15), [chunks[i] for i in range(len(chunks))], seed=3)
    with torch.no_grad():
        ours = MaskedLMObjective(model)(batch["input_ids"], batch["attention_mask"], batch["labels"])
        theirs = model(**batch).loss
        nothing = torch.full_like(batch["labels"], IGNORE_INDEX)  # a batch without a masked token: loss 0
        empty = MaskedLMObjective(model)(batch["input_ids"], batch["attention_mask"], nothing)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)
    assert float(empty) == 0.0


def test_one_epoch_trains_and_the_saved_folder_keeps_the_base_pooler(tiny_bert_dir, tokenizer, tmp_path):
    from transformers import AutoModelForSequenceClassification, BertForMaskedLM, BertModel

    config = PretrainConfig(base_model=str(tiny_bert_dir), max_length=32, batch_size=4, learning_rate=1e-3,
                            precision="fp32", seed=7, max_steps_per_epoch=3, log_every=1000)  # fmt: skip
    chunks = chunk_documents([LONG, SHORT] * 3, tokenizer, max_length=config.max_length)
    torch.manual_seed(config.seed)
    model, _ = load_mlm_model(tiny_bert_dir)
    before = model.bert.encoder.layer[0].attention.self.query.weight.detach().clone()
    steps = mlm_steps_per_epoch(len(chunks), 1, config)
    optimizer, scheduler = make_optimizer(model, config, steps)
    record = run_mlm_epoch(MaskedLMObjective(model), masking(tokenizer, 0.15), chunks, config, optimizer,
                           scheduler, epoch=1, steps=steps, shard=Shard())  # fmt: skip
    assert record["steps"] == 3 and record["chunks"] == 12 and math.isfinite(record["mlm_loss"])
    assert 0 < record["masked_tokens"] < record["tokens"] <= 12 * 32 and record["tokens_per_s"] > 0
    assert not torch.equal(model.bert.encoder.layer[0].attention.self.query.weight, before)
    saved = save_mlm_model(tmp_path, model, tokenizer, encoder_extras(tiny_bert_dir, model))
    reloaded = BertForMaskedLM.from_pretrained(saved)
    torch.testing.assert_close(reloaded.cls.predictions.transform.dense.weight,
                               model.cls.predictions.transform.dense.weight, rtol=0, atol=0)  # fmt: skip
    classifier = AutoModelForSequenceClassification.from_pretrained(saved, num_labels=1)
    base = BertModel.from_pretrained(tiny_bert_dir)
    torch.testing.assert_close(classifier.bert.pooler.dense.weight, base.pooler.dense.weight, rtol=0, atol=0)
    query = model.bert.encoder.layer[0].attention.self.query.weight
    torch.testing.assert_close(
        classifier.bert.encoder.layer[0].attention.self.query.weight, query, rtol=0, atol=0
    )


def test_the_masked_lm_head_can_learn_at_its_own_rate(tiny_bert_dir):
    model, initialised = load_mlm_model(tiny_bert_dir)
    config = PretrainConfig(base_model=str(tiny_bert_dir), learning_rate=5e-5, head_learning_rate=1e-3)
    optimizer, _ = make_optimizer(model, config, 10)
    rate = {id(p): group["initial_lr"] for group in optimizer.param_groups for p in group["params"]}
    names = dict(model.named_parameters())
    assert {n for n in names if rate[id(names[n])] == 1e-3} == {n for n in names if n.startswith("cls.")}
    assert {n for n in initialised if n in names} <= {n for n in names if n.startswith("cls.")}
    assert rate[id(model.bert.embeddings.word_embeddings.weight)] == 5e-5  # the tied decoder: encoder's rate
    assert "head_learning_rate" not in PretrainConfig().hyperparameters()  # earlier runs still match
    with pytest.raises(ValueError, match="head_learning_rate"):
        PretrainConfig(head_learning_rate=2.0)


def test_without_a_head_rate_the_optimizer_state_of_earlier_runs_still_loads(tiny_bert_dir):
    # Runs made before the head rate existed put the masked-LM head with the encoder: two groups
    # (decayed or not). A resume from such a checkpoint must find the same groups.
    model, _ = load_mlm_model(tiny_bert_dir)
    earlier, _ = make_optimizer(model, PretrainConfig(base_model=str(tiny_bert_dir)), 10)
    assert len(earlier.param_groups) == 2
    model(
        **{"input_ids": torch.tensor([[2, 5, 7, 3]]), "labels": torch.tensor([[-100, 5, -100, -100]])}
    ).loss.backward()
    earlier.step()
    resumed, _ = make_optimizer(model, PretrainConfig(base_model=str(tiny_bert_dir)), 10)
    resumed.load_state_dict(earlier.state_dict())  # raises on another number of groups
    with_rate, _ = make_optimizer(
        model, PretrainConfig(base_model=str(tiny_bert_dir), head_learning_rate=1e-3), 10
    )
    with pytest.raises(ValueError, match="parameter group"):
        with_rate.load_state_dict(earlier.state_dict())
