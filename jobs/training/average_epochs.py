"""A reranker whose weights are the mean of several epochs' checkpoints of one training run.

Epochs of one run lie close together in weight space, and their average (a uniform "model soup",
Wortsman et al. 2022) often ranks better than any one of them: on SciFact, the mean of attempt 6's
epochs 2 and 3 beat both on dev and on test (docs/training.md, attempt 7). ``bertsearch train``
keeps every epoch's checkpoint under ``MODEL_DIR.work/ray/epoch-NNN/model``, so this needs no
training. The result has no operating point of its own: choose it on dev with
``tune-rerank-weight`` before serving.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bertsearch.jobs.training.ray_fit import RAY_RUN_NAME
from bertsearch.ranker.model_dir import ModelRecord, publish_model
from bertsearch.ranker.training.loop import MODEL_SUBDIR

WEIGHTS_FILE = "model.safetensors"


def checkpoint(work_dir: Path, epoch: int) -> Path:
    folder = Path(work_dir) / RAY_RUN_NAME / f"epoch-{epoch:03d}" / MODEL_SUBDIR
    if not (folder / WEIGHTS_FILE).is_file():
        kept = sorted(p.parent.name for p in (Path(work_dir) / RAY_RUN_NAME).glob(f"epoch-*/{MODEL_SUBDIR}"))
        raise FileNotFoundError(
            f"no checkpoint of epoch {epoch} under {work_dir} (kept: {', '.join(kept) or 'none'})"
        )
    return folder


def average_epochs(
    model_dir: Path, epochs: Sequence[int], out: Path, work_dir: Path | None = None
) -> ModelRecord:
    """Write to ``out`` the run of ``model_dir`` with the mean weights of ``epochs``; returns its record.

    The operating point was tuned for the run's own best epoch, not for the average: it is
    dropped so that nobody serves it by accident.
    """
    import torch
    from safetensors.torch import load_file, save_file

    if len(set(epochs)) < 2:
        raise ValueError(f"average at least two different epochs, got {epochs}")
    model_dir = Path(model_dir)
    record = ModelRecord.require(model_dir)
    work_dir = Path(work_dir) if work_dir is not None else model_dir.with_name(model_dir.name + ".work")
    folders = [checkpoint(work_dir, epoch) for epoch in epochs]
    states = [load_file(folder / WEIGHTS_FILE) for folder in folders]
    if any(state.keys() != states[0].keys() for state in states):
        raise ValueError(f"the checkpoints of epochs {epochs} hold different tensors; were they one run?")
    mean = {}
    for name, tensor in states[0].items():
        if tensor.is_floating_point():  # summed in fp32, stored in the checkpoint's own dtype
            mean[name] = torch.stack([s[name].float() for s in states]).mean(0).to(tensor.dtype)
        else:  # integer buffers (position ids) are the same in every epoch
            mean[name] = tensor
    record = record.without_operating_point().with_provenance(
        averaged_epochs={"of": str(model_dir.resolve()), "epochs": sorted(set(epochs))}
    )
    publish_model(folders[0], out, record)
    save_file(mean, str(Path(out) / WEIGHTS_FILE), metadata={"format": "pt"})
    return record
