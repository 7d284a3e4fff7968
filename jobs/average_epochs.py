"""A reranker whose weights are the mean of several epochs' checkpoints of one training run.

Epochs of one run lie close together in weight space, and their average (a uniform "model soup",
Wortsman et al. 2022) often ranks better than any one of them: on SciFact, the mean of attempt 6's
epochs 2 and 3 beat both on dev and on test (docs/training.md, attempt 7). ``bertsearch train``
keeps every epoch's checkpoint under ``MODEL_DIR.work/ray/epoch-NNN/model``, so this needs no
training. The result has no operating point of its own: choose it on dev with
``tune-rerank-weight`` before serving.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from jobs.commands import positive_ints
from jobs.train import RAY_RUN_NAME, publish_model
from ranker.cross_encoder import METADATA_FILE, read_metadata
from ranker.training.loop import MODEL_SUBDIR

WEIGHTS_FILE = "model.safetensors"
# Tuned for the run's own best epoch, not for the average: dropped so that nobody serves them by accident.
OPERATING_POINT = ("rerank_weight", "rerank_top_n", "rerank_weight_tuning")


def checkpoint(work_dir: Path, epoch: int) -> Path:
    folder = Path(work_dir) / RAY_RUN_NAME / f"epoch-{epoch:03d}" / MODEL_SUBDIR
    if not (folder / WEIGHTS_FILE).is_file():
        kept = sorted(p.parent.name for p in (Path(work_dir) / RAY_RUN_NAME).glob(f"epoch-*/{MODEL_SUBDIR}"))
        raise FileNotFoundError(
            f"no checkpoint of epoch {epoch} under {work_dir} (kept: {', '.join(kept) or 'none'})"
        )
    return folder


def average_epochs(model_dir: Path, epochs: Sequence[int], out: Path, work_dir: Path | None = None) -> dict:
    """Write to ``out`` the run of ``model_dir`` with the mean weights of ``epochs``; returns its metadata."""
    import torch
    from safetensors.torch import load_file, save_file

    if len(set(epochs)) < 2:
        raise ValueError(f"average at least two different epochs, got {epochs}")
    model_dir = Path(model_dir)
    metadata = read_metadata(model_dir)
    if not metadata:
        raise FileNotFoundError(f"{model_dir}: no {METADATA_FILE}; give a MODEL_DIR from `bertsearch train`")
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
    for key in OPERATING_POINT:
        metadata.pop(key, None)
    metadata["averaged_epochs"] = {"of": str(model_dir.resolve()), "epochs": sorted(set(epochs))}
    publish_model(folders[0], out, metadata)
    save_file(mean, str(Path(out) / WEIGHTS_FILE), metadata={"format": "pt"})
    return metadata


# -- command line -------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "average-epochs",
        help="a reranker with the mean weights of several epochs of one training run",
        description="Average the checkpoints of the given epochs of the run that wrote MODEL_DIR "
        "and write the result to OUT (metadata kept, operating point dropped: tune it on dev "
        "with `tune-rerank-weight`).",
    )
    p.add_argument("model_dir", type=Path, help="MODEL_DIR from `bertsearch train`")
    p.add_argument(
        "--epochs", type=positive_ints("epochs", "2,3"), required=True, help="epochs to average, e.g. 2,3"
    )
    p.add_argument("--out", type=Path, required=True, help="folder to write (replaced when it exists)")
    p.add_argument(
        "--work-dir", type=Path, default=None, help="the run's --work-dir (default MODEL_DIR.work)"
    )
    p.set_defaults(run=command)


def command(args: argparse.Namespace) -> int:
    from jobs.commands import USER_ERRORS, UserError

    try:
        average_epochs(args.model_dir, args.epochs, args.out, args.work_dir)
    except USER_ERRORS as err:
        raise UserError(str(err)) from err
    epochs = ", ".join(str(e) for e in args.epochs)
    print(f"{args.out}: the mean of epochs {epochs} of {args.model_dir}")
    print(f"next: bertsearch tune-rerank-weight DATASET --split dev --reranker {args.out} --index-dir DIR")
    return 0

