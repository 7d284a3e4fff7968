"""Losses over groups of cross-encoder scores, shape (groups, 1 + negatives), positive in column 0.

The distillation losses also take the teacher's scores of the same pairs (same shape): the
student learns the teacher's judgement of every candidate, not only which one is the positive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

LossName = Literal["listwise", "bce", "margin-mse", "distill-kl"]


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


def margin_mse(scores: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Margin-MSE (Hofstätter et al., 2020): the student's margin between the positive and each
    negative should equal the teacher's."""
    _check(scores)
    student_margin = scores[:, :1].float() - scores[:, 1:].float()
    teacher_margin = teacher[:, :1].float() - teacher[:, 1:].float()
    return F.mse_loss(student_margin, teacher_margin)


def distill_kl(scores: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Listwise KL divergence of the student's softmax over a group from the teacher's."""
    _check(scores)
    return F.kl_div(F.log_softmax(scores.float(), dim=1), F.log_softmax(teacher.float(), dim=1),
                    log_target=True, reduction="batchmean")  # fmt: skip


LOSSES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "listwise": listwise_softmax_ce,
    "bce": pointwise_bce,
}
DISTILL_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "margin-mse": margin_mse,
    "distill-kl": distill_kl,
}


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    """The loss called ``name``: ``loss(scores)``, or ``loss(scores, teacher)`` for the ones of
    ``DISTILL_LOSSES``."""
    if name in DISTILL_LOSSES:
        return DISTILL_LOSSES[name]
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join([*LOSSES, *DISTILL_LOSSES])}, not {name!r}")
    return LOSSES[name]


def _check(scores: torch.Tensor) -> None:
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must be (groups, 1 + negatives >= 2), got shape {tuple(scores.shape)}")
