"""Length-bounded batches: what the cross-encoder pads together."""

from __future__ import annotations

import pytest

from bertsearch.indexer.batching import token_bounded_batches

pytestmark = pytest.mark.unit


def test_short_pairs_do_not_ride_with_a_long_one():
    lengths = [20, 18, 256, 22, 19, 21, 17, 20]
    batches = token_bounded_batches(lengths, max_items=64, max_tokens=8192)
    assert batches[0] == [2]  # the long pair alone, not padding seven short ones to 256
    assert sorted(batches[1]) == [0, 1, 3, 4, 5, 6, 7]


def test_every_index_once_and_each_batch_within_its_bounds():
    lengths = [5, 300, 120, 64, 64, 63, 250, 31, 16, 130, 512, 8]
    batches = token_bounded_batches(lengths, max_items=3, max_tokens=600)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) <= 3 and (len(batch) * longest <= 600 or len(batch) == 1)
        assert all(2 * lengths[i] >= longest for i in batch)
