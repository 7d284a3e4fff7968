"""Reciprocal rank fusion against hand-computed values."""

from __future__ import annotations

import pytest

from bertsearch.indexer.documents import Hit
from bertsearch.ranker.fusion import ReciprocalRankFusion

pytestmark = pytest.mark.unit


def ranking(stage: str, ids: str) -> list[Hit]:
    return [Hit(doc_id, 10.0 - rank, {stage: 10.0 - rank}) for rank, doc_id in enumerate(ids)]


def test_rrf_scores_and_order_match_hand_computation():
    fused = ReciprocalRankFusion(k=60).fuse([ranking("bm25", "abc"), ranking("dense", "cad")])
    # a: 1/61 + 1/62; c: 1/63 + 1/61; b: 1/62; d: 1/63
    expected = {"a": 1 / 61 + 1 / 62, "c": 1 / 63 + 1 / 61, "b": 1 / 62, "d": 1 / 63}
    assert [h.id for h in fused] == ["a", "c", "b", "d"]
    for hit in fused:
        assert hit.score == pytest.approx(expected[hit.id])
        assert hit.scores["rrf"] == pytest.approx(expected[hit.id])
    by_id = {h.id: h for h in fused}
    assert set(by_id["a"].scores) == {"bm25", "dense", "rrf"}
    assert set(by_id["d"].scores) == {"dense", "rrf"}


def test_ties_break_by_id_and_top_k_cuts():
    fused = ReciprocalRankFusion(k=0).fuse([ranking("bm25", "xy"), ranking("dense", "yx")], top_k=1)
    assert [h.id for h in fused] == ["x"]


def test_negative_constant_is_refused():
    with pytest.raises(ValueError, match="non-negative"):
        ReciprocalRankFusion(k=-1)
