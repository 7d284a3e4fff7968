"""Temperature sampling over several collections' training groups."""

from __future__ import annotations

from collections import Counter

import pytest

from bertsearch.ranker.training.examples import TrainingGroup
from bertsearch.ranker.training.mixture import mixture_shares, quotas, sample_mixture

pytestmark = pytest.mark.unit


def _groups(name: str, n: int) -> list[TrainingGroup]:
    return [TrainingGroup(f"{name}-{i}", "q", (f"{name}-{i}", "neg"), ("p", "n")) for i in range(n)]


def test_temperature_one_keeps_the_sizes_and_a_high_one_evens_them_out():
    counts = {"big": 900, "small": 100}
    assert mixture_shares(counts, {}, 1.0) == pytest.approx({"big": 0.9, "small": 0.1})
    assert mixture_shares(counts, {}, 2.0) == pytest.approx({"big": 0.75, "small": 0.25})  # 30 : 10
    even = mixture_shares(counts, {}, 1000.0)
    assert even["small"] == pytest.approx(0.5, abs=0.01)
    # a weight counts a collection as that many times its size
    assert mixture_shares(counts, {"small": 9.0}, 1.0) == pytest.approx({"big": 0.5, "small": 0.5})
    with pytest.raises(ValueError, match="temperature must be positive"):
        mixture_shares(counts, {}, 0)
    with pytest.raises(ValueError, match="weights must be positive"):
        mixture_shares(counts, {"big": 0}, 1)


def test_quotas_sum_to_the_epoch_size():
    assert quotas({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 10) == {"a": 4, "b": 3, "c": 3}
    assert sum(quotas({"a": 0.123, "b": 0.877}, 997).values()) == 997


def test_a_small_collection_is_repeated_in_whole_passes_and_a_large_one_subsampled():
    groups = {"big": _groups("big", 90), "small": _groups("small", 10)}
    mixed, summary = sample_mixture(groups, {}, temperature=1000.0, seed=3)
    assert len(mixed) == 100  # the epoch size of the concatenation
    by = Counter(g.query_id.split("-")[0] for g in mixed)
    assert by["small"] == summary["small"]["sampled"] == pytest.approx(50, abs=1)
    small = Counter(g.query_id for g in mixed if g.query_id.startswith("small"))
    assert set(small) == {f"small-{i}" for i in range(10)}  # every group, before any repeats more
    assert max(small.values()) - min(small.values()) <= 1
    big = [g.query_id for g in mixed if g.query_id.startswith("big")]
    assert len(set(big)) == len(big)  # subsampled without repeats
    again, _ = sample_mixture(groups, {}, temperature=1000.0, seed=3)
    assert [g.query_id for g in again] == [g.query_id for g in mixed]
    other, _ = sample_mixture(groups, {}, temperature=1000.0, seed=4)
    assert [g.query_id for g in other] != [g.query_id for g in mixed]


def test_an_epoch_can_be_given_its_size():
    groups = {"big": _groups("big", 90), "small": _groups("small", 10)}
    mixed, summary = sample_mixture(groups, {}, temperature=1.0, seed=1, size=20)
    assert len(mixed) == 20 and (summary["big"]["sampled"], summary["small"]["sampled"]) == (18, 2)
