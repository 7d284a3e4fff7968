"""The training loop of the cross-encoder, without Ray: what every data-parallel worker runs.

``jobs.training.worker`` runs it on Ray Train workers (DDP over gloo or NCCL). Each epoch: a
seeded permutation of the groups is cut into equal shards per worker; each worker scores its
groups with the cross-encoder, the group loss is back-propagated (gradients averaged by DDP,
accumulated over ``grad_accum`` micro-batches), AdamW steps under a warm-up + linear-decay
schedule. At the end of an epoch rank 0 writes a checkpoint (``model/`` in ``save_pretrained``
format, :func:`save_model`, + ``trainer_state.pt``, :func:`save_state`) and the dev evaluation
runs on that very folder. Within an epoch, ``run_epoch`` hands every finished step to an
``after_step`` hook with this worker's :class:`StepPosition`: ``jobs.training.progress`` writes
mid-epoch checkpoints from it, so that a long epoch cut short resumes at its last one.

Reproducibility: all randomness of an epoch (the permutation, dropout) is seeded from
``seed`` and the epoch number, and model/optimizer/schedule state is restored exactly, so a run
resumed from the checkpoint of epoch e, or from a step within an epoch (each worker's loss sums
and random state are restored too), ends with the same weights as one never interrupted.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from bertsearch.indexer.models import Precision, autocast
from bertsearch.ranker.cross_encoder import CrossEncoder
from bertsearch.ranker.training.examples import TrainingGroup
from bertsearch.ranker.training.losses import DISTILL_LOSSES, LossName, get_loss

MODEL_SUBDIR = "model"
STATE_FILE = "trainer_state.pt"
DevEvaluation = Callable[[Path, int], dict[str, float]]  # (model folder, epoch) -> metrics


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one fine-tuning run (per worker unless said otherwise).

    ``groups_per_batch``: groups scored per forward pass on each worker, so a micro-batch holds
    ``groups_per_batch * group size`` pairs; the effective batch is that times ``grad_accum``
    times the number of workers. ``head_learning_rate``: the fresh relevance head's rate (None:
    ``learning_rate``); a head starting from random weights learns far too slowly at an
    encoder's fine-tuning rate. ``warmup_ratio``: share of all optimizer steps spent warming
    the learning rate up from 0; it then decays linearly to 0. ``max_steps_per_epoch`` caps an
    epoch (smoke runs, benchmarks). ``kill_after_epoch`` makes every worker SIGKILL itself right
    after that epoch's checkpoint: it exists to test resuming, and is not a hyper-parameter.
    ``checkpoint_minutes``: write a mid-epoch checkpoint when this long has passed since the
    last one (0: at epoch ends only); a long epoch killed part-way then loses at most that much.
    ``kill_after_step`` is ``kill_after_epoch``'s twin for them: every worker SIGKILLs itself
    right after the mid-epoch checkpoint of that step of the run (counted across epochs).
    """

    base_model: str | None = None
    max_length: int = 256
    epochs: int = 1
    groups_per_batch: int = 2
    grad_accum: int = 1
    learning_rate: float = 2e-5
    head_learning_rate: float | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    loss: LossName = "listwise"
    precision: Precision = "auto"
    seed: int = 13
    max_steps_per_epoch: int | None = None
    log_every: int = 20
    kill_after_epoch: int | None = None
    checkpoint_minutes: float = 15.0
    kill_after_step: int | None = None

    def __post_init__(self) -> None:
        check_training_settings(self, ("epochs", "groups_per_batch", "grad_accum", "log_every"))
        get_loss(self.loss)  # an unknown name is refused with the known ones
        if not self.checkpoint_minutes >= 0:  # also refuses NaN
            minutes = self.checkpoint_minutes
            raise ValueError(f"checkpoint_minutes must be >= 0 (0: epoch ends only), not {minutes:g}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hyperparameters(self) -> dict[str, Any]:
        """What decides the trained weights: a resumed run must match these (not logging, not how
        often checkpoints are written, not test hooks)."""
        return {k: v for k, v in self.to_dict().items() if k not in _NOT_HYPERPARAMETERS}


_NOT_HYPERPARAMETERS = ("log_every", "kill_after_epoch", "checkpoint_minutes", "kill_after_step")


def check_training_settings(config, counts: Sequence[str]) -> None:
    """The checks every training config shares (fine-tuning's TrainConfig, masked-LM's
    PretrainConfig): lengths, counts of at least 1, rates, precision, the epoch cap."""
    if config.max_length < 16:
        raise ValueError(f"max_length must be at least 16 tokens, got {config.max_length}")
    for name in counts:
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}")
    if not 0 < config.learning_rate < 1:
        raise ValueError(f"learning_rate must be in (0, 1), got {config.learning_rate}")
    if config.head_learning_rate is not None and not 0 < config.head_learning_rate < 1:
        raise ValueError(f"head_learning_rate must be in (0, 1) or None, got {config.head_learning_rate}")
    if not 0 <= config.warmup_ratio < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {config.warmup_ratio}")
    if config.weight_decay < 0 or config.max_grad_norm <= 0:
        raise ValueError("weight_decay must be >= 0 and max_grad_norm > 0")
    if config.precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', not {config.precision!r}")
    if config.max_steps_per_epoch is not None and config.max_steps_per_epoch < 1:
        raise ValueError("max_steps_per_epoch must be at least 1 (or None for full epochs)")


def steps_per_epoch(groups: int, workers: int, config: TrainConfig) -> int:
    """Optimizer steps in one epoch; raises ValueError when there are too few groups for one."""
    per_step = workers * config.groups_per_batch * config.grad_accum
    steps = groups // per_step
    if steps < 1:
        raise ValueError(
            f"{groups} training groups cannot fill one step of {per_step} groups "
            f"({workers} workers x {config.groups_per_batch} groups per batch x "
            f"{config.grad_accum} accumulation);"
            " lower --groups-per-batch/--grad-accum/--workers or give more queries"
        )
    if config.max_steps_per_epoch is not None:
        steps = min(steps, config.max_steps_per_epoch)
    return steps


def epoch_order(n_groups: int, seed: int, epoch: int) -> list[int]:
    """The group order of ``epoch`` (1-based): the same on every worker and every resume."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n_groups, generator=generator).tolist()


def warmup_linear_decay(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate multiplier: 0 -> 1 over ``warmup_steps``, then 1 -> 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def group_size(groups: Sequence[TrainingGroup]) -> int:
    """The common size of ``groups`` (one positive + negatives); ValueError when they differ."""
    if not groups:
        raise ValueError("no training groups: nothing to train on")
    sizes = {g.size for g in groups}
    if len(sizes) != 1:
        raise ValueError("every training group must hold the same number of passages")
    return sizes.pop()


class OptimizerSettings(Protocol):
    """What :func:`make_optimizer` reads: :class:`TrainConfig` has it, and so has the masked-LM
    ``ranker.training.mlm.PretrainConfig``."""

    @property
    def learning_rate(self) -> float: ...

    @property
    def head_learning_rate(self) -> float | None: ...

    @property
    def weight_decay(self) -> float: ...

    @property
    def warmup_ratio(self) -> float: ...

    def to_dict(self) -> dict[str, Any]: ...


def make_optimizer(model: torch.nn.Module, config: OptimizerSettings, total_steps: int):
    """AdamW over ``model`` with the warm-up + linear-decay schedule of ``total_steps`` steps."""
    optimizer = torch.optim.AdamW(_parameter_groups(model, config), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_linear_decay(total_steps, int(config.warmup_ratio * total_steps))
    )
    return optimizer, scheduler


@dataclass(frozen=True)
class StepPosition:
    """Where one worker stands after ``step`` optimizer steps of ``epoch``: the sum and count of
    its micro-batch losses so far and the seconds trained. With that worker's random state, what
    a resumed epoch needs to go on exactly as if never stopped."""

    epoch: int
    step: int
    loss_sum: float
    loss_count: int
    seconds: float


@dataclass
class Shard:
    """Where this worker stands in the data-parallel group."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")


# Long: one epoch's step loop (micro-batches, DDP sync, resume position, logging) reads best whole.
def run_epoch(
    encoder: CrossEncoder,
    wrapped: torch.nn.Module,
    groups: Sequence[TrainingGroup],
    config: TrainConfig,
    optimizer,
    scheduler,
    *,
    epoch: int,
    steps: int,
    shard: Shard,
    start: StepPosition | None = None,
    after_step: Callable[[StepPosition], None] | None = None,
) -> dict[str, Any]:
    """Train one epoch on this worker's shard of ``groups``; returns the epoch's record (mean
    loss over all workers, steps, pairs, seconds, pairs/s). ``wrapped`` is ``encoder.model``,
    possibly inside DistributedDataParallel, whose gradient sync is skipped on all but the last
    accumulation micro-batch. ``start``: go on from a mid-epoch checkpoint (the caller has
    restored the weights, the optimizer and this worker's random state); ``after_step`` is
    called with the position after every optimizer step."""
    if start is None:  # the dropout of this epoch and rank
        torch.manual_seed(config.seed * 1_000_003 + epoch * 101 + shard.rank)
        start = StepPosition(epoch, 0, 0.0, 0, 0.0)
    order = epoch_order(len(groups), config.seed, epoch)
    group_size = groups[0].size
    pairs_per_step = config.grad_accum * config.groups_per_batch * group_size * shard.world
    loss_fn = get_loss(config.loss)
    wrapped.train()
    started = time.perf_counter()
    loss_sum, loss_count = start.loss_sum, start.loss_count
    for step in range(start.step, steps):
        for micro in range(config.grad_accum):
            first = ((step * config.grad_accum + micro) * shard.world + shard.rank) * config.groups_per_batch
            batch = [groups[i] for i in order[first : first + config.groups_per_batch]]
            last_micro = micro == config.grad_accum - 1
            sync = contextlib.nullcontext() if last_micro or shard.world == 1 else wrapped.no_sync()
            with sync:
                with autocast(shard.device, encoder.bf16):
                    scores = encoder.logits(_pairs(batch)).view(len(batch), group_size)
                loss = _group_loss(loss_fn, config, scores, batch)
                (loss / config.grad_accum).backward()
            loss_sum += float(loss.detach())
            loss_count += 1
        torch.nn.utils.clip_grad_norm_(wrapped.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if after_step is not None:
            seconds = start.seconds + time.perf_counter() - started
            after_step(StepPosition(epoch, step + 1, loss_sum, loss_count, seconds))
        if shard.rank == 0 and (step + 1) % config.log_every == 0:
            rate = (step + 1 - start.step) * pairs_per_step / (time.perf_counter() - started)
            print(
                f"[train] epoch {epoch} step {step + 1}/{steps} loss {loss_sum / loss_count:.4f} "
                f"lr {scheduler.get_last_lr()[0]:.2e} {rate:.1f} pairs/s",
                flush=True,
            )
    seconds = start.seconds + time.perf_counter() - started
    return {
        "epoch": epoch,
        "train_loss": mean_across_workers(loss_sum, loss_count, shard.device),
        "steps": steps,
        "pairs": steps * pairs_per_step,
        "train_seconds": round(seconds, 3),
        "pairs_per_s": round(steps * pairs_per_step / seconds, 3),
        **({"resumed_at_step": start.step} if start.step else {}),
    }


def _group_loss(loss_fn, config: TrainConfig, scores: torch.Tensor, batch) -> torch.Tensor:
    if config.loss in DISTILL_LOSSES:  # against the teacher's scores of the same pairs
        teacher = torch.tensor([g.teacher_scores for g in batch], device=scores.device)
        return loss_fn(scores, teacher)
    return loss_fn(scores)


def save_model(folder: Path, encoder: CrossEncoder, model: torch.nn.Module) -> Path:
    """Write ``folder/model`` in ``save_pretrained`` format (fp32 weights bit for bit); returns it."""
    model_dir = Path(folder) / MODEL_SUBDIR
    model.save_pretrained(model_dir)
    encoder.tokenizer.save_pretrained(model_dir)
    return model_dir


def save_state(
    folder: Path,
    optimizer,
    scheduler,
    *,
    epoch: int,
    history: list[dict[str, Any]],
    config: OptimizerSettings,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the trainer state that a resumed run continues from, beside the model folder
    (``epoch``: the last finished one; ``extra``: more fields, such as a mid-epoch position)."""
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "history": history,
            "config": config.to_dict(),
            **(extra or {}),
        },
        Path(folder) / STATE_FILE,
    )


def load_state(folder: Path) -> dict[str, Any]:
    """The trainer state of a checkpoint folder (optimizer, scheduler, epoch, history, config)."""
    return torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)


def _pairs(batch: Sequence[TrainingGroup]) -> list[tuple[str, str]]:
    return [(group.query, passage) for group in batch for passage in group.passages]


def _parameter_groups(model: torch.nn.Module, config: OptimizerSettings) -> list[dict[str, Any]]:
    # Biases and LayerNorm weights take no weight decay (the BERT fine-tuning convention); the
    # head may get its own rate: the relevance head (``classifier.*``, or ``score.*`` in some
    # architectures) or the masked-LM head (``cls.*``; its decoder is tied to the word embeddings,
    # which named_parameters lists once, under the encoder). The masked-LM head is a group of its
    # own only when it has its own rate: without one the groups are those of the runs made before
    # that rate existed, so their checkpoints' optimizer states still load on resume.
    head_lr = config.head_learning_rate if config.head_learning_rate is not None else config.learning_rate
    head_prefixes = ("classifier.", "score.") + (("cls.",) if config.head_learning_rate is not None else ())
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        is_head = name.startswith(head_prefixes)
        groups.setdefault((is_head, parameter.ndim >= 2), []).append(parameter)
    return [
        {
            "params": params,
            "lr": head_lr if is_head else config.learning_rate,
            "weight_decay": config.weight_decay if decays else 0.0,
        }
        for (is_head, decays), params in sorted(groups.items())
    ]


def sum_across_workers(values: Sequence[float], device: torch.device) -> list[float]:
    """Each of ``values`` summed over the data-parallel group (as it is outside one)."""
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)  # NCCL: GPU tensors
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(tensor)
    return tensor.tolist()


def mean_across_workers(total: float, count: int, device: torch.device) -> float:
    """``total / count`` over the data-parallel group (NaN when nothing was counted)."""
    total, count = sum_across_workers([total, count], device)
    return total / count if count > 0 else math.nan
