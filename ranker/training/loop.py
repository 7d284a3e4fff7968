"""The per-worker training loop that Ray Train runs on every worker (DDP over gloo or NCCL).

Each epoch: a seeded permutation of the groups is cut into equal shards per worker; each worker
scores its groups with the cross-encoder, the group loss is back-propagated (gradients averaged
by DDP, accumulated over ``grad_accum`` micro-batches), AdamW steps under a warm-up + linear-decay
schedule. At the end of an epoch rank 0 writes a checkpoint (``model/`` in ``save_pretrained``
format + ``trainer_state.pt``), runs the dev evaluation on that very folder, and reports both.

Reproducibility: all randomness of an epoch (the permutation, dropout) is seeded from
``seed`` and the epoch number, and model/optimizer/schedule state is restored exactly, so a run
resumed from the checkpoint of epoch e ends with the same weights as one never interrupted.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from indexer.models import Precision, autocast
from ranker.cross_encoder import CrossEncoder
from ranker.training.examples import TrainingGroup
from ranker.training.losses import LOSSES, LossName, get_loss

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
    epoch (smoke runs, benchmarks). ``crash_after_epoch`` raises right after that epoch's
    checkpoint, as a killed worker would: it exists to test resuming.
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
    crash_after_epoch: int | None = None

    def __post_init__(self) -> None:
        if self.max_length < 16:
            raise ValueError(f"max_length must be at least 16 tokens, got {self.max_length}")
        for name in ("epochs", "groups_per_batch", "grad_accum", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        if self.head_learning_rate is not None and not 0 < self.head_learning_rate < 1:
            raise ValueError(f"head_learning_rate must be in (0, 1) or None, got {self.head_learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0 or self.max_grad_norm <= 0:
            raise ValueError("weight_decay must be >= 0 and max_grad_norm > 0")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', not {self.precision!r}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError("max_steps_per_epoch must be at least 1 (or None for full epochs)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point. ``loop_config`` holds ``config`` (TrainConfig), ``groups`` (a list of
    TrainingGroup or a Ray object ref to one), ``dev_eval`` (None or a picklable callable taking a
    model folder and the epoch and returning metrics), ``dev_metric`` (the key that picks the best epoch) and
    ``threads`` (torch CPU threads of this worker)."""
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
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()

    torch.manual_seed(config.seed)  # identical head initialisation on every worker
    history: list[dict[str, Any]] = []
    start_epoch = 1
    state = None
    checkpoint = ray.train.get_checkpoint()
    with contextlib.ExitStack() as stack:
        weights = config.base_model
        if checkpoint is not None:
            folder = Path(stack.enter_context(checkpoint.as_directory()))
            state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=False)
            weights = str(folder / MODEL_SUBDIR)  # save_pretrained keeps fp32 weights bit for bit
            start_epoch = state["epoch"] + 1
            history = state["history"]
        encoder = CrossEncoder(
            weights,
            max_length=config.max_length,
            device=str(device),
            precision=config.precision,
            allow_untrained_head=True,
        ).load()
    model = encoder.model
    wrapped = ray.train.torch.prepare_model(model)
    encoder.model = wrapped  # CrossEncoder.logits tokenizes exactly as serving does, then calls this
    optimizer = torch.optim.AdamW(
        _parameter_groups(model, config), lr=config.learning_rate
    )
    steps = steps_per_epoch(len(groups), world, config)
    total = steps * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_linear_decay(total, int(config.warmup_ratio * total))
    )
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    loss_fn = get_loss(config.loss)
    group_size = groups[0].size

    for epoch in range(start_epoch, config.epochs + 1):
        torch.manual_seed(config.seed * 1_000_003 + epoch * 101 + rank)  # dropout of this epoch and rank
        order = epoch_order(len(groups), config.seed, epoch)
        wrapped.train()
        started = time.perf_counter()
        loss_sum, loss_count = 0.0, 0
        for step in range(steps):
            for micro in range(config.grad_accum):
                first = ((step * config.grad_accum + micro) * world + rank) * config.groups_per_batch
                batch = [groups[i] for i in order[first : first + config.groups_per_batch]]
                last_micro = micro == config.grad_accum - 1
                sync = contextlib.nullcontext() if last_micro or world == 1 else wrapped.no_sync()
                with sync:
                    with autocast(device, encoder.bf16):
                        scores = encoder.logits(_pairs(batch)).view(len(batch), group_size)
                    loss = loss_fn(scores)
                    (loss / config.grad_accum).backward()
                loss_sum += float(loss.detach())
                loss_count += 1
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if rank == 0 and (step + 1) % config.log_every == 0:
                elapsed = time.perf_counter() - started
                pairs = (step + 1) * config.grad_accum * config.groups_per_batch * group_size * world
                print(
                    f"[train] epoch {epoch} step {step + 1}/{steps} loss {loss_sum / loss_count:.4f} "
                    f"lr {scheduler.get_last_lr()[0]:.2e} {pairs / elapsed:.1f} pairs/s",
                    flush=True,
                )
        train_seconds = time.perf_counter() - started
        mean_loss = _mean_across_workers(loss_sum, loss_count, device)
        pairs = steps * config.grad_accum * config.groups_per_batch * group_size * world
        record: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": mean_loss,
            "steps": steps,
            "pairs": pairs,
            "train_seconds": round(train_seconds, 3),
            "pairs_per_s": round(pairs / train_seconds, 3),
        }
        if rank == 0:
            with tempfile.TemporaryDirectory() as folder:
                model_dir = Path(folder) / MODEL_SUBDIR
                model.save_pretrained(model_dir)
                encoder.tokenizer.save_pretrained(model_dir)
                if dev_eval is not None:
                    eval_started = time.perf_counter()
                    record.update({f"dev_{k}": float(v) for k, v in dev_eval(model_dir, epoch).items()})
                    record["dev_seconds"] = round(time.perf_counter() - eval_started, 3)
                history.append(record)
                torch.save(
                    {
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "epoch": epoch,
                        "history": history,
                        "config": config.to_dict(),
                    },
                    Path(folder) / STATE_FILE,
                )
                ray.train.report(
                    record,
                    checkpoint=ray.train.Checkpoint.from_directory(folder),
                    checkpoint_dir_name=f"epoch-{epoch:03d}",
                )
        else:
            history.append(record)
            ray.train.report(record, checkpoint=None, checkpoint_dir_name=f"epoch-{epoch:03d}")
        if config.crash_after_epoch == epoch:
            raise RuntimeError(f"crash_after_epoch={epoch}: simulated failure after this epoch's checkpoint")


def _pairs(batch: Sequence[TrainingGroup]) -> list[tuple[str, str]]:
    return [(group.query, passage) for group in batch for passage in group.passages]


def _parameter_groups(model: torch.nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    # Biases and LayerNorm weights take no weight decay (the BERT fine-tuning convention); the
    # classification head (``classifier.*``, or ``score.*`` in some architectures) may get its own rate.
    head_lr = config.head_learning_rate if config.head_learning_rate is not None else config.learning_rate
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        is_head = name.startswith(("classifier.", "score."))
        groups.setdefault((is_head, parameter.ndim >= 2), []).append(parameter)
    return [
        {
            "params": params,
            "lr": head_lr if is_head else config.learning_rate,
            "weight_decay": config.weight_decay if decays else 0.0,
        }
        for (is_head, decays), params in sorted(groups.items())
    ]


def _mean_across_workers(total: float, count: int, device: torch.device) -> float:
    values = torch.tensor([total, float(count)], dtype=torch.float64, device=device)  # NCCL wants GPU tensors
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(values)
    return float(values[0] / values[1]) if values[1] > 0 else math.nan
