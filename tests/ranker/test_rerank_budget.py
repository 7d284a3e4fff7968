"""The rerank budget's speed estimate: per token, so that long and short pairs are planned for
what they cost (a cross-encoder's time grows with the tokens it reads, not with the pairs)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bertsearch.api.scoring_worker import ScoringWorker, WorkerSettings
from bertsearch.ranker.rerank_budget import BUDGET, ChunkedScorer, SpeedEstimate, pair_tokens

pytestmark = pytest.mark.unit

SECONDS_PER_TOKEN = 0.0004


class PerTokenCost:
    """A scorer that takes SECONDS_PER_TOKEN per estimated token: what a budget has to plan for."""

    max_length = 256
    batch_size = 64

    def score_pairs(self, pairs):
        time.sleep(SECONDS_PER_TOKEN * sum(pair_tokens(pair, self.max_length) for pair in pairs))
        return np.arange(len(pairs), dtype=np.float32)


LONG = [("query", "word " * 200)] * 8  # 256 tokens each (capped)
SHORT = [("query", "word " * 10)] * 40  # 16 tokens each


def test_the_estimate_is_per_token_rises_at_once_and_decays():
    speed = SpeedEstimate()
    assert speed.seconds_for(100) is None and speed.pairs_within([10], 1.0) is None
    speed.observe(1000, 1.0)
    assert speed.seconds_for(500) == pytest.approx(0.5)
    assert speed.pairs_within([100, 100, 500, 1], 0.25) == 2  # in order: the third does not fit
    speed.observe(100, 0.2)  # slower: taken at once
    assert speed.seconds_per_token == pytest.approx(0.002)
    speed.observe(1000, 1.0)  # faster: approached gradually
    assert 0.001 < speed.seconds_per_token < 0.002


def test_tokens_are_estimated_from_characters_and_capped():
    assert pair_tokens(("abcd", "efgh" * 10), 256) == 1 + 10 + 3
    assert pair_tokens(("q", "x" * 10_000), 128) == 128


@pytest.mark.parametrize("make", ["worker", "chunked"])
def test_short_pairs_after_long_ones_are_all_scored_within_the_budget(make):
    """Having learnt its speed on long pairs, a scorer fits many more short pairs in the same
    budget: 40 short pairs (640 tokens, ~0.26 s) fit in 0.6 s; 40 long ones (10,240 tokens,
    ~4 s) do not, and are cut for the budget without overrunning it."""
    encoder = PerTokenCost()
    scorer = (
        ScoringWorker(encoder, WorkerSettings(max_batch_pairs=64, max_batch_tokens=16_384, max_wait_ms=0))
        if make == "worker"
        else ChunkedScorer(encoder, chunk=8)
    )
    try:
        scorer.score_prefix(LONG, None)  # learns its speed on long pairs: ~0.8 s
        short = scorer.score_prefix(SHORT, time.monotonic() + 0.6)
        started = time.monotonic()
        long = scorer.score_prefix(LONG * 5, started + 0.6)
        spent = time.monotonic() - started
    finally:
        if make == "worker":
            scorer.close()
    assert short.cut is None and len(short.scores) == len(SHORT)
    assert long.cut == BUDGET and 0 < len(long.scores) < len(LONG * 5)
    assert spent < 0.6 + 0.15
