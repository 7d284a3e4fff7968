"""Length bucketing: batch texts of similar length together so padding costs little."""

from __future__ import annotations

from collections.abc import Sequence


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices into ``lengths`` grouped in batches of similar length, longest first.

    Longest first makes the first batch the most memory-hungry, so an out-of-memory error shows
    up at once rather than at the end of a long job.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
