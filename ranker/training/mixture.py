"""Training on several collections at once without one of them drowning the others.

Concatenating the groups of every collection lets the largest decide what the model learns
(CISI alone has 3,114 judged pairs, MEDLINE 696). Temperature sampling gives collection *c*
the share ``(weight_c · n_c) ** (1 / T) / Σ`` of an epoch: ``T = 1`` keeps the proportions
(weights only), larger ``T`` moves toward one equal share per collection. The epoch keeps the
total number of groups of the concatenation, so a run costs the same whatever ``T`` is; a
collection whose share exceeds its groups is repeated in whole seeded passes, one below it is
subsampled. The sample is drawn once per run (seeded) and recorded with the model.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from bertsearch.ranker.training.examples import TrainingGroup


def mixture_shares(
    counts: Mapping[str, int], weights: Mapping[str, float], temperature: float
) -> dict[str, float]:
    """Each collection's share of an epoch (they sum to 1)."""
    if temperature <= 0:
        raise ValueError(f"the sampling temperature must be positive, got {temperature}")
    bad = {name: weights.get(name, 1.0) for name in counts if weights.get(name, 1.0) <= 0}
    if bad:
        raise ValueError(f"collection weights must be positive: {bad}")
    if not counts or not any(counts.values()):
        raise ValueError("no collection has training groups")
    raw = {
        name: (weights.get(name, 1.0) * n) ** (1.0 / temperature) if n else 0.0 for name, n in counts.items()
    }
    total = sum(raw.values())
    return {name: value / total for name, value in raw.items()}


def quotas(shares: Mapping[str, float], size: int) -> dict[str, int]:
    """``size`` groups split by ``shares``, rounded by largest remainder so they sum to ``size``."""
    exact = {name: share * size for name, share in shares.items()}
    counts = {name: math.floor(value) for name, value in exact.items()}
    left = size - sum(counts.values())
    for name in sorted(exact, key=lambda n: (counts[n] - exact[n], n))[:left]:
        counts[name] += 1
    return counts


def sample_mixture(
    groups: Mapping[str, Sequence[TrainingGroup]],
    weights: Mapping[str, float],
    temperature: float,
    seed: int,
    size: int | None = None,
) -> tuple[list[TrainingGroup], dict[str, dict[str, float]]]:
    """The groups of one run's epochs, and per collection its groups, share and sampled count.

    ``size`` defaults to the total number of groups. Sampling is without replacement within a
    collection until its groups run out (then a new seeded pass), so no group is seen twice
    before every group of its collection was seen once.
    """
    counts = {name: len(g) for name, g in groups.items()}
    shares = mixture_shares(counts, weights, temperature)
    wanted = quotas(shares, sum(counts.values()) if size is None else size)
    rng = random.Random(seed)
    mixed: list[TrainingGroup] = []
    summary: dict[str, dict[str, float]] = {}
    for name in sorted(groups):  # a fixed order: the sample depends on the seed only
        pool, need, drawn = list(groups[name]), wanted[name], []
        while pool and len(drawn) < need:
            order = pool[:]
            rng.shuffle(order)
            drawn.extend(order[: need - len(drawn)])
        mixed.extend(drawn)
        summary[name] = {
            "groups": counts[name],
            "share": round(shares[name], 6),
            "sampled": len(drawn),
            "weight": weights.get(name, 1.0),
        }
    return mixed, summary
