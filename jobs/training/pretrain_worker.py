"""What every Ray Train worker of ``bertsearch pretrain`` runs: ``ranker.training.mlm`` in Ray's DDP group.

Ray enters here (:func:`pretrain_loop_per_worker`), as it enters ``jobs.training.worker`` for
fine-tuning, and shares its set-up and reporting: each worker restores the masked-LM model,
optimizer and schedule from the last checkpoint (or loads the base model), trains the remaining
epochs, and after each one rank 0 writes a checkpoint (``model/`` + ``trainer_state.pt``) that is
reported to Ray with the epoch's record (the other ranks report the record only).
"""

from __future__ import annotations

import contextlib
from functools import partial
from pathlib import Path
from typing import Any

import torch

from bertsearch.indexer.models import resolve_model
from bertsearch.jobs.training.worker import end_epoch, resume_state, shared_value, worker_setup
from bertsearch.ranker.training.loop import MODEL_SUBDIR, load_state, make_optimizer, save_state
from bertsearch.ranker.training.mlm import (
    MaskedLMObjective,
    PretrainConfig,
    TokenChunks,
    encoder_extras,
    load_mlm_model,
    masking,
    mlm_steps_per_epoch,
    run_mlm_epoch,
    save_mlm_model,
)


def pretrain_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point. ``loop_config`` holds ``config`` (PretrainConfig), ``chunks``
    (TokenChunks, or a Ray object ref to them), ``resume_from`` (a checkpoint folder on disk to
    start from when Ray has none registered) and ``threads`` (torch CPU threads)."""
    import ray.train.torch

    config: PretrainConfig = loop_config["config"]
    chunks: TokenChunks = shared_value(loop_config["chunks"])
    shard, checkpoint = worker_setup(loop_config)
    torch.manual_seed(config.seed)  # the same fresh MLM head on every worker
    model, tokenizer, extras, state = _restore(config, checkpoint, keep_extras=shard.rank == 0)
    objective = ray.train.torch.prepare_model(MaskedLMObjective(model))
    collator = masking(tokenizer, config.mlm_probability)
    steps = mlm_steps_per_epoch(len(chunks), shard.world, config)
    optimizer, scheduler = make_optimizer(model, config, steps * config.epochs)
    history, start_epoch = resume_state(state, optimizer, scheduler)

    def write_checkpoint(folder: str, *, epoch: int) -> None:
        save_mlm_model(folder, model, tokenizer, extras)
        save_state(folder, optimizer, scheduler, epoch=epoch, history=history, config=config)

    for epoch in range(start_epoch, config.epochs + 1):
        record = run_mlm_epoch(
            objective, collator, chunks, config, optimizer, scheduler, epoch=epoch, steps=steps, shard=shard
        )
        history.append(record)
        write = partial(write_checkpoint, epoch=epoch)
        end_epoch(epoch, record, shard, write, kill_after_epoch=config.kill_after_epoch)


def _restore(config: PretrainConfig, checkpoint, *, keep_extras: bool):
    """(masked-LM model, tokenizer, encoder extras, checkpoint state or None) at the checkpoint's
    weights, or the base model's. Only the rank that saves needs the extras (the pooler)."""
    from transformers import AutoTokenizer

    with contextlib.ExitStack() as stack:
        weights, state = resolve_model(config.base_model), None
        if checkpoint is not None:
            folder = Path(stack.enter_context(checkpoint.as_directory()))
            state = load_state(folder)
            weights = str(folder / MODEL_SUBDIR)
        model, initialised = load_mlm_model(weights)
        if state is None and initialised and keep_extras:  # printed: Ray passes workers' stdout on
            print(f"[pretrain] {weights} lacks masked-LM weights, initialised: {', '.join(initialised)} "
                  "(the decoder is tied to the word embeddings)", flush=True)  # fmt: skip
        extras = encoder_extras(weights, model) if keep_extras else {}
        tokenizer = AutoTokenizer.from_pretrained(weights)
    return model, tokenizer, extras, state
