"""Training on Ray Train: how many workers on what, the TorchTrainer run, and its best epoch.

:func:`fit` trains mined groups with a ``TorchTrainer`` (``jobs.training.worker`` on every
worker), keeps every epoch's checkpoint under ``work_dir/ray``, and publishes the best epoch as a
model folder. A ``work_dir`` that already holds checkpoints of the same settings resumes after
the last of them; one made with other hyper-parameters is refused, naming them.
:func:`run_trainer` is that TorchTrainer run for any worker entry point: ``bertsearch pretrain``
(``jobs.training.pretrain``) runs its masked-LM workers through it too.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from bertsearch.indexer import atomic
from bertsearch.indexer.models import DEFAULT_MODEL_NAME
from bertsearch.jobs.runtime import join_or_start_ray, machine
from bertsearch.jobs.training.progress import PROGRESS_SUBDIR
from bertsearch.jobs.training.worker import train_loop_per_worker
from bertsearch.ranker.model_dir import ModelRecord, publish_model
from bertsearch.ranker.training.examples import TrainingGroup
from bertsearch.ranker.training.loop import MODEL_SUBDIR, DevEvaluation, TrainConfig, group_size, load_state

RAY_RUN_NAME = "ray"
RUN_SETTINGS_FILE = "run.json"


@dataclass(frozen=True)
class RayScaling:
    """How many Ray Train workers, on what. ``cpus_per_worker`` may be fractional so that other
    Ray tasks (and the 2-core dev machine) are never starved; torch then uses at least one thread."""

    workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    max_failures: int = 0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.cpus_per_worker <= 0:
            raise ValueError(f"cpus_per_worker must be positive, got {self.cpus_per_worker}")
        if self.max_failures < 0:
            raise ValueError(f"max_failures must be >= 0, got {self.max_failures}")
        if self.use_gpu and not torch.cuda.is_available() and not os.environ.get("RAY_ADDRESS"):
            raise ValueError("--use-gpu needs CUDA on this machine or a GPU cluster in RAY_ADDRESS")

    @property
    def backend(self) -> str:
        return "nccl" if self.use_gpu else "gloo"

    def describe(self) -> dict[str, Any]:
        """The machine and the worker layout, for the model folder."""
        return {**machine(), "workers": self.workers, "backend": self.backend, "torch": torch.__version__}


@dataclass
class TrainOutcome:
    model_dir: Path
    best_epoch: int
    history: list[dict[str, Any]]
    seconds: float
    record: ModelRecord = field(default_factory=ModelRecord)


def fit(
    groups: list[TrainingGroup],
    config: TrainConfig,
    scaling: RayScaling,
    *,
    out: Path,
    work_dir: Path,
    dev_eval: DevEvaluation | None = None,
    dev_metric: str = "ndcg@10",
    serving: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    run_data: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Train on ``groups`` with a Ray TorchTrainer and write the best epoch to ``out``.

    The best epoch is the one with the highest ``dev_tuned_<dev_metric>`` (the dev metric at the
    rerank weight chosen for that epoch) when ``dev_eval`` is given, otherwise the last one; its
    weight becomes the model's ``rerank_weight``. ``serving`` may give ``rerank_weight`` and
    ``rerank_top_n`` for the record; ``provenance`` is added to it. Raises ValueError when
    ``work_dir`` holds a run with other settings, and ray.train.TrainingFailedError when the
    workers fail more than ``scaling.max_failures`` times.
    """
    group_size(groups)  # refuses no groups, or groups of different sizes
    started = time.perf_counter()
    config = absolute_base_model(config)
    # run_data: what else decides the weights beyond the groups' own key (a mixture's temperature, weights)
    check_run_settings(work_dir, config, scaling, dev_metric if dev_eval is not None else None, data=run_data)
    loop_config = {"config": config, "dev_eval": dev_eval}
    history = run_trainer(
        train_loop_per_worker, loop_config, scaling, work_dir, epochs=config.epochs, shared={"groups": groups}
    )
    selected_by = f"dev_tuned_{dev_metric}" if dev_eval is not None else None
    best = best_epoch(history, selected_by)
    source = epoch_model_dir(work_dir, best)
    seconds = time.perf_counter() - started
    serving = dict(serving or {})
    if dev_eval is not None:
        serving["rerank_weight"] = history[best - 1]["dev_rerank_weight"]
    record = ModelRecord(
        base_model=config.base_model or DEFAULT_MODEL_NAME,
        max_length=config.max_length,  # serving reads the trained length back
        rerank_weight=serving.get("rerank_weight"),
        rerank_top_n=serving.get("rerank_top_n"),
        provenance={
            "best_epoch": best,
            "selected_by": selected_by or "last epoch (no dev split)",
            **_run_description(groups, config, scaling, history, seconds),
            **(provenance or {}),
        },
    )
    publish_model(source, out, record)
    return TrainOutcome(model_dir=out, best_epoch=best, history=history, seconds=seconds, record=record)


def _run_description(groups, config: TrainConfig, scaling: RayScaling, history, seconds: float) -> dict:
    return {
        "hyperparameters": config.to_dict(),
        "scaling": asdict(scaling),
        "epochs": history,
        "training_groups": len(groups),
        "group_size": groups[0].size,
        "wall_seconds": round(seconds, 1),
        "train_seconds": round(sum(e["train_seconds"] for e in history), 1),
        "hardware": scaling.describe(),
    }


def absolute_base_model(config):
    """``config`` (any config with a ``base_model``) with a local base model as an absolute path:
    Ray workers do not run in this directory, and would take a relative one for a hub id."""
    if config.base_model is not None and Path(config.base_model).exists():
        return replace(config, base_model=str(Path(config.base_model).resolve()))
    return config


def run_trainer(
    train_loop: Callable[[dict[str, Any]], None],
    loop_config: dict[str, Any],
    scaling: RayScaling,
    work_dir: Path,
    *,
    epochs: int,
    shared: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run ``train_loop`` on ``scaling.workers`` Ray Train workers and return the epoch records
    of the last checkpoint (its ``trainer_state.pt`` history).

    Each worker gets ``loop_config`` plus ``shared`` (put in Ray's object store once: the training
    data), ``resume_from`` (see :func:`latest_checkpoint`), ``progress_dir`` (``work_dir/progress``,
    for mid-epoch checkpoints: ``jobs.training.progress``) and ``threads``. A ``work_dir`` whose
    last checkpoint is already of epoch ``epochs`` is a finished run: its history comes back at
    once, without starting workers.
    """
    resume_from = latest_checkpoint(work_dir)
    if resume_from is not None:
        state = load_state(resume_from)
        if state["epoch"] >= epochs:
            return state["history"]
    join_or_start_ray()
    check_resources(scaling)
    import ray

    loop_config = {
        **loop_config,
        **{name: ray.put(value) for name, value in (shared or {}).items()},
        "resume_from": str(resume_from) if resume_from is not None else None,
        "progress_dir": str(Path(work_dir).resolve() / PROGRESS_SUBDIR),
        "threads": max(1, int(scaling.cpus_per_worker)),
    }
    result = _trainer(train_loop, loop_config, scaling, work_dir).fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training finished without a checkpoint; see the Ray logs under {work_dir}")
    with result.checkpoint.as_directory() as folder:
        return load_state(Path(folder))["history"]


def epoch_model_dir(work_dir: Path, epoch: int) -> Path:
    """The model folder of epoch ``epoch``'s checkpoint; FileNotFoundError when it is missing."""
    source = Path(work_dir).resolve() / RAY_RUN_NAME / f"epoch-{epoch:03d}" / MODEL_SUBDIR
    if not source.is_dir():
        raise FileNotFoundError(f"the checkpoint of epoch {epoch} is missing: {source}")
    return source


def _trainer(train_loop, loop_config: dict[str, Any], scaling: RayScaling, work_dir: Path):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    resources = {"CPU": scaling.cpus_per_worker, **({"GPU": 1} if scaling.use_gpu else {})}
    return TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=scaling.workers, use_gpu=scaling.use_gpu, resources_per_worker=resources
        ),
        torch_config=TorchConfig(backend=scaling.backend),
        run_config=RunConfig(
            name=RAY_RUN_NAME,
            storage_path=str(work_dir.resolve()),
            checkpoint_config=CheckpointConfig(num_to_keep=None),  # the best epoch may be any of them
            failure_config=FailureConfig(max_failures=scaling.max_failures),
        ),
    )


def latest_checkpoint(work_dir: Path) -> Path | None:
    """The newest complete epoch checkpoint on disk under ``work_dir``, or None.

    Ray resumes from the checkpoints its controller registered; a worker killed right after
    writing one can leave it on disk but unregistered. This finds it, so that a rerun resumes
    from every epoch that was written.
    """
    for folder in sorted((Path(work_dir) / RAY_RUN_NAME).glob("epoch-[0-9][0-9][0-9]"), reverse=True):
        if not (folder / MODEL_SUBDIR).is_dir():
            continue
        try:
            state = load_state(folder)
        except (OSError, RuntimeError, EOFError, KeyError):
            continue  # cut short while being written: take an older epoch
        if state.get("epoch") == int(folder.name.split("-")[1]):
            return folder
    return None


def check_run_settings(
    work_dir: Path,
    config: TrainConfig,
    scaling: RayScaling,
    dev_metric: str | None,
    *,
    data: dict[str, Any] | None = None,
) -> None:
    """Record the settings that decide the weights in ``work_dir``, or refuse a run whose settings
    differ from those recorded there: resuming would silently continue the old run's checkpoints.
    ``config`` is any config with ``hyperparameters()``; ``data`` (when given) describes the
    training data, which must match too."""
    settings = {
        "hyperparameters": config.hyperparameters(),
        "workers": scaling.workers,  # the effective batch and the data shards depend on it
        "dev_metric": dev_metric,
        **({"data": data} if data is not None else {}),
    }
    settings = json.loads(json.dumps(settings, default=str))
    path = Path(work_dir) / RUN_SETTINGS_FILE
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved != settings:
            changed = sorted(_differences(saved, settings))
            raise ValueError(
                f"{work_dir} holds a run made with other settings ({', '.join(changed)} differ); "
                "rerun with the same settings to resume it, or delete that folder or pass another --work-dir"
            )
        return
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, settings, sort_keys=True)


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``name (old then, new now)`` for every setting that differs, nested ones by their own name."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b)
        elif a != b:
            out.append(f"{key} ({a!r} then, {b!r} now)")
    return out


def check_resources(scaling: RayScaling) -> None:
    """Refuse a local run that asks for more CPUs/GPUs than Ray has: it would wait forever."""
    import ray

    if os.environ.get("RAY_ADDRESS"):
        return  # a cluster may autoscale to fit
    have = ray.cluster_resources()
    needs = {"CPU": scaling.workers * scaling.cpus_per_worker, "GPU": scaling.workers * int(scaling.use_gpu)}
    for name, need in needs.items():
        available = have.get(name, 0.0)
        if need > available + 1e-9:
            raise ValueError(
                f"{scaling.workers} workers need {need:g} {name}s but the local Ray has {available:g}; "
                "lower --workers or --cpus-per-worker (fractions are fine)"
            )


def best_epoch(history: list[dict[str, Any]], key: str | None) -> int:
    """The epoch with the highest ``key`` (the earliest on ties), or the last epoch when ``key`` is None."""
    if not history:
        raise ValueError("no epoch finished")
    if key is None:
        return int(history[-1]["epoch"])
    missing = [e["epoch"] for e in history if key not in e]
    if missing:
        raise ValueError(f"epochs {missing} have no {key!r}; known keys: {sorted(history[0])}")
    return int(max(history, key=lambda e: (e[key], -e["epoch"]))["epoch"])
