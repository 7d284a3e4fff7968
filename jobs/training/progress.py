"""Mid-epoch checkpoints of a fine-tuning run: a long epoch killed part-way resumes at its last step.

Epoch checkpoints go through Ray (``worker.end_epoch``) and choose the best epoch; a one-hour epoch
on CPU killed at minute 50 would still start over. So every ``checkpoint_minutes`` the workers
agree to stop after a step, gather each worker's loss sums and random state to rank 0, and rank 0
writes ``WORK/progress/epoch-EEE-step-SSSSSS``: the weights (``model/``), and
``trainer_state.pt`` with the optimizer, the schedule, the finished epochs' history and every
rank's :class:`StepPosition` and random state. The folder is written under a temporary name and
renamed when complete, and the older ones are then removed, so at most one is left behind.
They are not reported to Ray: they are no candidates for the best epoch, and an epoch's own
checkpoint replaces them (:func:`clear`).

Resuming (``worker``): the rerun restores the last finished epoch as before, then looks here for a
checkpoint of the epoch after it (:func:`agreed`) and, when there is one, goes on from its step
with its weights, optimizer, schedule, loss sums and each rank's random state. The run folder is
Ray's storage folder, so on a cluster it is on storage every worker reaches, as Ray requires.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from bertsearch.indexer import atomic
from bertsearch.ranker.training.loop import (
    Shard,
    StepPosition,
    TrainConfig,
    load_state,
    save_model,
    save_state,
    sum_across_workers,
)

PROGRESS_SUBDIR = "progress"
_NAME = re.compile(r"epoch-(\d+)-step-(\d+)")


def agreed(progress_dir: str | Path | None, epoch: int, shard: Shard) -> Path | None:
    """The mid-epoch checkpoint of ``epoch`` that every worker goes on from, or None: rank 0 picks
    the newest one that loads and tells the others, which may list the folder otherwise (a network
    file system's cache, a killed run's writer not yet gone); workers that started from different
    steps would run epochs of different lengths and never meet at DDP's collectives."""
    choice = _newest_usable(progress_dir, epoch, shard.world) if shard.rank == 0 else None
    if shard.world > 1 and torch.distributed.is_initialized():
        box = [str(choice) if choice is not None else None]
        torch.distributed.broadcast_object_list(box, src=0)
        choice = Path(box[0]) if box[0] is not None else None
    return choice


def _newest_usable(progress_dir: str | Path | None, epoch: int, world: int) -> Path | None:
    """The newest complete mid-epoch checkpoint of ``epoch`` that loads and was written by
    ``world`` workers. Each write removes the older ones, so one that does not qualify (cut short
    by a machine loss, written by another worker count) is skipped with a warning, and the epoch
    then starts over."""
    if progress_dir is None or not Path(progress_dir).is_dir():
        return None
    found = []
    for folder in Path(progress_dir).iterdir():
        match = _NAME.fullmatch(folder.name)
        if match and int(match[1]) == epoch:
            found.append((int(match[2]), folder))
    for _, folder in sorted(found, reverse=True):
        try:
            workers = len(load_state(folder)["ranks"])
            why = None if workers == world else f"written by {workers} workers, this run has {world}"
        except Exception as error:  # whatever a damaged pickle raises, rank 0 must still answer the others
            why = f"unreadable ({type(error).__name__}: {error})"
        if why is None:
            return folder
        print(f"[train] skipping the mid-epoch checkpoint {folder}: {why}", flush=True)
    return None


def rank_start(state: dict[str, Any], shard: Shard) -> StepPosition:
    """This worker's position in a mid-epoch checkpoint's ``state`` (one :func:`agreed` picked, so
    written by as many workers), with its random state restored."""
    mine = state["ranks"][shard.rank]
    torch.set_rng_state(mine["rng"])
    if mine.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(mine["cuda_rng"], shard.device)
    return StepPosition(**mine["position"])


def clear(progress_dir: str | Path | None, *, keep: Path | None = None) -> None:
    """Remove the mid-epoch checkpoints (all but ``keep``), and what a killed write left half-done."""
    if progress_dir is None or not Path(progress_dir).is_dir():
        return
    for folder in Path(progress_dir).iterdir():
        if folder != keep:
            shutil.rmtree(folder, ignore_errors=True)


class StepCheckpoints:
    """The ``after_step`` hook of ``run_epoch`` on every worker: writes a mid-epoch checkpoint
    when ``config.checkpoint_minutes`` have passed since the last one (rank 0's clock decides for
    all, so every worker joins the same gather)."""

    def __init__(self, progress_dir, config: TrainConfig, shard: Shard, encoder, model, optimizer, scheduler,
                 history: list[dict[str, Any]], steps_per_epoch: int) -> None:  # fmt: skip
        self.progress_dir = Path(progress_dir) if progress_dir else None
        self.config, self.shard = config, shard
        self.encoder, self.model = encoder, model
        self.optimizer, self.scheduler, self.history = optimizer, scheduler, history
        self.steps_per_epoch = steps_per_epoch
        self.last = time.monotonic()

    def restart_clock(self) -> None:
        """Count the minutes from now (after an epoch's own checkpoint)."""
        self.last = time.monotonic()

    def __call__(self, position: StepPosition) -> None:
        if self.progress_dir is None or not self.config.checkpoint_minutes:
            return
        if position.step == self.steps_per_epoch:
            return  # the epoch's own checkpoint follows at once
        due = self.shard.rank == 0 and time.monotonic() - self.last >= 60 * self.config.checkpoint_minutes
        if self.shard.world > 1:
            due = sum_across_workers([float(due)], self.shard.device)[0] > 0
        if not due:
            return
        ranks = _gather({"position": asdict(position), **_random_state(self.shard)}, self.shard.world)
        if self.shard.rank == 0:
            self._write(position, ranks)
        self.restart_clock()
        run_step = (position.epoch - 1) * self.steps_per_epoch + position.step
        if self.config.kill_after_step == run_step:
            if torch.distributed.is_initialized():
                torch.distributed.barrier()  # rank 0's folder is complete before anyone dies
            os.kill(os.getpid(), signal.SIGKILL)  # as a machine loss would: no cleanup, no exception

    def _write(self, position: StepPosition, ranks: list[dict[str, Any]]) -> None:
        self.progress_dir.mkdir(parents=True, exist_ok=True)
        final = self.progress_dir / f"epoch-{position.epoch:03d}-step-{position.step:06d}"
        partial = Path(tempfile.mkdtemp(prefix=".writing-", dir=self.progress_dir))
        save_model(partial, self.encoder, self.model)
        # "epoch" is the last finished one, as in an epoch checkpoint's state; "ranks" says how far
        # the next one got on each worker
        save_state(partial, self.optimizer, self.scheduler, epoch=position.epoch - 1, history=self.history,
                   config=self.config, extra={"ranks": ranks})  # fmt: skip
        atomic.replace_directory(partial, final)  # on disk before the name says complete
        clear(self.progress_dir, keep=final)
        print(f"[train] epoch {position.epoch} step {position.step}: checkpoint {final}", flush=True)


def _random_state(shard: Shard) -> dict[str, Any]:
    cuda = torch.cuda.get_rng_state(shard.device) if shard.device.type == "cuda" else None
    return {"rng": torch.get_rng_state(), "cuda_rng": cuda}


def _gather(value: dict[str, Any], world: int) -> list[dict[str, Any]]:
    """``value`` of every rank, in rank order (on rank 0; the others get theirs back too)."""
    if world == 1 or not torch.distributed.is_initialized():
        return [value]
    values: list[Any] = [None] * world
    torch.distributed.all_gather_object(values, value)
    return values
