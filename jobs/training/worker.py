"""What every Ray Train worker runs: the loop of ``ranker.training.loop`` inside Ray's DDP group.

Ray enters here (:func:`train_loop_per_worker`): it hands each worker its rank, device and the
last checkpoint; the worker restores model, optimizer and schedule from that checkpoint, trains
the remaining epochs, and after each one rank 0 writes a checkpoint, runs the dev evaluation on
it and reports both to Ray (the other ranks report their metrics only).
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bertsearch.ranker.cross_encoder import CrossEncoder
from bertsearch.ranker.training.loop import (
    MODEL_SUBDIR,
    DevEvaluation,
    Shard,
    TrainConfig,
    load_state,
    make_optimizer,
    run_epoch,
    save_model,
    save_state,
    steps_per_epoch,
)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point. ``loop_config`` holds ``config`` (TrainConfig), ``groups`` (a list of
    TrainingGroup or a Ray object ref to one), ``dev_eval`` (None or a picklable callable taking a
    model folder and the epoch and returning metrics), ``resume_from`` (a checkpoint folder on disk
    to start from when Ray has none registered, see ``ray_fit.latest_checkpoint``) and
    ``threads`` (torch CPU threads)."""
    import ray
    import ray.train
    import ray.train.torch

    config: TrainConfig = loop_config["config"]
    groups = loop_config["groups"]
    if isinstance(groups, ray.ObjectRef):
        groups = ray.get(groups)
    dev_eval: DevEvaluation | None = loop_config.get("dev_eval")
    torch.set_num_threads(max(1, int(loop_config.get("threads", 1))))
    context = ray.train.get_context()
    shard = Shard(context.get_world_rank(), context.get_world_size(), ray.train.torch.get_device())

    torch.manual_seed(config.seed)  # identical head initialisation on every worker
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and loop_config.get("resume_from"):
        checkpoint = ray.train.Checkpoint.from_directory(loop_config["resume_from"])
    encoder, state = _restore(config, checkpoint, shard)
    model = encoder.model
    wrapped = ray.train.torch.prepare_model(model)
    encoder.model = wrapped  # CrossEncoder.logits tokenizes exactly as serving does, then calls this
    steps = steps_per_epoch(len(groups), shard.world, config)
    optimizer, scheduler = make_optimizer(model, config, steps * config.epochs)
    history: list[dict[str, Any]] = []
    start_epoch = 1
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, start_epoch = state["history"], state["epoch"] + 1

    for epoch in range(start_epoch, config.epochs + 1):
        record = run_epoch(encoder, wrapped, groups, config, optimizer, scheduler,
                           epoch=epoch, steps=steps, shard=shard)
        history.append(record)
        name = f"epoch-{epoch:03d}"
        if shard.rank != 0:
            ray.train.report(record, checkpoint=None, checkpoint_dir_name=name)
        else:
            with tempfile.TemporaryDirectory() as folder:
                model_dir = save_model(folder, encoder, model)
                if dev_eval is not None:
                    started = time.perf_counter()
                    record.update({f"dev_{k}": float(v) for k, v in dev_eval(model_dir, epoch).items()})
                    record["dev_seconds"] = round(time.perf_counter() - started, 3)
                save_state(folder, optimizer, scheduler, epoch=epoch, history=history, config=config)
                ray.train.report(
                    record, checkpoint=ray.train.Checkpoint.from_directory(folder), checkpoint_dir_name=name
                )
        if config.kill_after_epoch == epoch:
            os.kill(os.getpid(), signal.SIGKILL)  # as a machine loss would: no cleanup, no exception


def _restore(config: TrainConfig, checkpoint, shard: Shard) -> tuple[CrossEncoder, dict[str, Any] | None]:
    """The encoder at the checkpoint's weights (or the base model's) and the checkpoint's state."""
    with contextlib.ExitStack() as stack:
        weights, state = config.base_model, None
        if checkpoint is not None:
            folder = Path(stack.enter_context(checkpoint.as_directory()))
            state = load_state(folder)
            weights = str(folder / MODEL_SUBDIR)  # save_pretrained keeps fp32 weights bit for bit
        encoder = CrossEncoder(
            weights,
            max_length=config.max_length,
            device=str(shard.device),
            precision=config.precision,
            allow_untrained_head=True,
        ).load()
    return encoder, state
