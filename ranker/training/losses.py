"""Losses over groups of cross-encoder scores, shape (groups, 1 + negatives), positive in column 0."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

LossName = Literal["listwise", "bce"]


def listwise_softmax_ce(scores: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy of the positive against its group's negatives.

    The localized contrastive estimation loss of Gao, Dai & Callan (ECIR 2021) for BERT
    rerankers: each group holds one positive and hard negatives from the retriever's own top
    candidates, and the positive must win the softmax over the group.
    """
    _check(scores)
    target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores.float(), target)


def pointwise_bce(scores: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of every score on its own: 1 for column 0, 0 for the rest."""
    _check(scores)
    labels = torch.zeros_like(scores, dtype=torch.float32)
    labels[:, 0] = 1.0
    return F.binary_cross_entropy_with_logits(scores.float(), labels)


LOSSES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "listwise": listwise_softmax_ce,
    "bce": pointwise_bce,
}


def get_loss(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {name!r}")
    return LOSSES[name]


def _check(scores: torch.Tensor) -> None:
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must be (groups, 1 + negatives >= 2), got shape {tuple(scores.shape)}")
