"""What every Ray Train worker runs: the loop of ``ranker.training.loop`` inside Ray's DDP group.

Ray enters here (:func:`train_loop_per_worker`): it hands each worker its rank, device and the
last checkpoint; the worker restores model, optimizer and schedule from that checkpoint, trains
the remaining epochs, and after each one rank 0 writes a checkpoint, runs the dev evaluation on
it and reports both to Ray (the other ranks report their metrics only). Within an epoch the
workers write mid-epoch checkpoints (``jobs.training.progress``); a rerun goes on from the last
one of the epoch it resumes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from bertsearch.jobs.training import progress
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
    to start from when Ray has none registered, see ``ray_fit.latest_checkpoint``),
    ``progress_dir`` (where mid-epoch checkpoints go; None: none) and ``threads`` (torch CPU
    threads)."""
    import ray.train.torch

    config: TrainConfig = loop_config["config"]
    groups = shared_value(loop_config["groups"])
    dev_eval: DevEvaluation | None = loop_config.get("dev_eval")
    progress_dir = loop_config.get("progress_dir")
    shard, checkpoint = worker_setup(loop_config)
    torch.manual_seed(config.seed)  # identical head initialisation on every worker
    encoder, state, mid_epoch = _restore(config, checkpoint, shard, progress_dir)
    model = encoder.model
    wrapped = ray.train.torch.prepare_model(model)
    encoder.model = wrapped  # CrossEncoder.logits tokenizes exactly as serving does, then calls this
    steps = steps_per_epoch(len(groups), shard.world, config)
    optimizer, scheduler = make_optimizer(model, config, steps * config.epochs)
    history, start_epoch = resume_state(state, optimizer, scheduler)
    # this worker's random state is restored last, after everything above that draws from it
    start = progress.rank_start(state, shard) if mid_epoch else None
    after_step = progress.StepCheckpoints(
        progress_dir, config, shard, encoder, model, optimizer, scheduler, history, steps
    )

    def write_checkpoint(folder: str, *, epoch: int, record: dict[str, Any]) -> None:
        model_dir = save_model(folder, encoder, model)
        if dev_eval is not None:
            started = time.perf_counter()
            record.update({f"dev_{k}": float(v) for k, v in dev_eval(model_dir, epoch).items()})
            record["dev_seconds"] = round(time.perf_counter() - started, 3)
        save_state(folder, optimizer, scheduler, epoch=epoch, history=history, config=config)

    for epoch in range(start_epoch, config.epochs + 1):
        record = run_epoch(
            encoder, wrapped, groups, config, optimizer, scheduler, epoch=epoch, steps=steps, shard=shard,
            start=start if epoch == start_epoch else None, after_step=after_step,
        )  # fmt: skip
        history.append(record)
        write = partial(write_checkpoint, epoch=epoch, record=record)
        end_epoch(epoch, record, shard, write, kill_after_epoch=config.kill_after_epoch)
        if shard.rank == 0:
            progress.clear(progress_dir)  # the epoch's own checkpoint replaces its mid-epoch ones
        after_step.restart_clock()  # the epoch's checkpoint (and dev evaluation) was one


def shared_value(value: Any) -> Any:
    """A value handed to the workers through Ray's object store (``run_trainer``'s ``shared``)."""
    import ray

    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


def worker_setup(loop_config: dict[str, Any]) -> tuple[Shard, Any]:
    """Set torch's CPU threads (``threads``); return this worker's place in the data-parallel group
    and the checkpoint to start from: the one Ray registered, else ``resume_from`` on disk (a
    checkpoint a killed run wrote but Ray never registered), else None."""
    import ray.train
    import ray.train.torch

    torch.set_num_threads(max(1, int(loop_config.get("threads", 1))))
    context = ray.train.get_context()
    shard = Shard(context.get_world_rank(), context.get_world_size(), ray.train.torch.get_device())
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and loop_config.get("resume_from"):
        checkpoint = ray.train.Checkpoint.from_directory(loop_config["resume_from"])
    return shard, checkpoint


def resume_state(state: dict[str, Any] | None, optimizer, scheduler) -> tuple[list[dict[str, Any]], int]:
    """Restore optimizer and schedule from a checkpoint's state; the history so far and the epoch
    to start at (``[]`` and 1 without a checkpoint)."""
    if state is None:
        return [], 1
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state["history"], state["epoch"] + 1


def end_epoch(
    epoch: int,
    record: dict[str, Any],
    shard: Shard,
    write_checkpoint: Callable[[str], None],
    *,
    kill_after_epoch: int | None = None,
) -> None:
    """Report the epoch to Ray: rank 0 first fills a fresh folder with ``write_checkpoint(folder)``
    and reports it as the checkpoint ``epoch-NNN``; the other ranks report ``record`` only. With
    ``kill_after_epoch == epoch`` the worker then SIGKILLs itself (the resume tests' hook)."""
    import ray.train

    name = f"epoch-{epoch:03d}"
    if shard.rank != 0:
        ray.train.report(record, checkpoint=None, checkpoint_dir_name=name)
    else:
        with tempfile.TemporaryDirectory() as folder:
            write_checkpoint(folder)
            ray.train.report(
                record, checkpoint=ray.train.Checkpoint.from_directory(folder), checkpoint_dir_name=name
            )
    if kill_after_epoch == epoch:
        os.kill(os.getpid(), signal.SIGKILL)  # as a machine loss would: no cleanup, no exception


def _restore(
    config: TrainConfig, checkpoint, shard: Shard, progress_dir: str | None
) -> tuple[CrossEncoder, dict[str, Any] | None, bool]:
    """The encoder at the weights to go on from, the state they come with, and whether that is a
    mid-epoch checkpoint: the last one of the epoch after ``checkpoint``'s when there is one, else
    ``checkpoint`` (an epoch's), else the base model with no state."""
    with contextlib.ExitStack() as stack:
        weights, state = config.base_model, None
        if checkpoint is not None:
            folder = Path(stack.enter_context(checkpoint.as_directory()))
            state = load_state(folder)
            weights = str(folder / MODEL_SUBDIR)  # save_pretrained keeps fp32 weights bit for bit
        mid_epoch = progress.agreed(progress_dir, (state["epoch"] if state else 0) + 1, shard)
        if mid_epoch is not None:
            state = load_state(mid_epoch)
            weights = str(mid_epoch / MODEL_SUBDIR)
        encoder = CrossEncoder(
            weights,
            max_length=config.max_length,
            device=str(shard.device),
            precision=config.precision,
            allow_untrained_head=True,
        ).load()
    return encoder, state, mid_epoch is not None
