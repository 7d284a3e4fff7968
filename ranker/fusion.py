"""Fusion of ranked lists: reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009)."""

from __future__ import annotations

from collections.abc import Sequence

from bertsearch.indexer.documents import Hit

FUSION_STAGE = "rrf"


class ReciprocalRankFusion:
    """score(d) = Σ over lists of 1 / (k + rank of d in the list), ranks from 1.

    Fused hits keep every input stage's score, so a hit found by both retrievers carries
    ``bm25`` and ``dense`` next to ``rrf``.
    """

    def __init__(self, k: int = 60) -> None:
        if k < 0:
            raise ValueError(f"the RRF constant k must be non-negative, got {k}")
        self.k = k

    def fuse(self, rankings: Sequence[Sequence[Hit]], top_k: int | None = None) -> list[Hit]:
        fused: dict[str, float] = {}
        stage_scores: dict[str, dict[str, float]] = {}
        for ranking in rankings:
            for rank, hit in enumerate(ranking, start=1):
                fused[hit.id] = fused.get(hit.id, 0.0) + 1.0 / (self.k + rank)
                stage_scores.setdefault(hit.id, {}).update(hit.scores)
        # Ties (same fused score) break by id so runs are reproducible.
        order = sorted(fused, key=lambda doc_id: (-fused[doc_id], doc_id))
        if top_k is not None:
            order = order[:top_k]
        return [
            Hit(id=doc_id, score=fused[doc_id], scores={**stage_scores[doc_id], FUSION_STAGE: fused[doc_id]})
            for doc_id in order
        ]


def interpolate(rerank: Sequence[float], retrieval: Sequence[float], weight: float) -> list[float]:
    """``weight``·minmax(rerank) + (1 − ``weight``)·minmax(retrieval), over one query's candidates.

    Cross-encoder logits and fused retrieval scores live on unrelated scales, so each is
    min-max normalised within the query first. A list whose values are all equal contributes 0.
    A reranker trained on little data is often wrong where retrieval is sure, and right where it
    is not; blending keeps both signals (``weight`` 1 is the reranker alone, 0 retrieval alone).
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the rerank weight must be between 0 and 1, got {weight}")
    if len(rerank) != len(retrieval):
        raise ValueError(f"{len(rerank)} rerank scores for {len(retrieval)} retrieval scores")
    return [
        weight * r + (1.0 - weight) * f
        for r, f in zip(_min_max(rerank), _min_max(retrieval), strict=True)
    ]


def _min_max(values: Sequence[float]) -> list[float]:
    if not values:
        return []
    low, high = min(values), max(values)
    span = high - low
    return [(v - low) / span if span > 0 else 0.0 for v in values]
