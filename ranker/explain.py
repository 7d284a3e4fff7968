"""Why one document ranks where it does for a query: every stage's score and rank, the query
terms that matched (from the lexical engine's own explanation), and the cross-encoder's word
attributions (``ranker.attributions``).

The stages come from one run of the very pipeline that answers ``/search``, with the request's
settings and every candidate kept: the document's BM25 and dense ranks, the RRF contribution of
each retriever (1 / (k + rank)), its fused rank, its rerank score and rank, the blended score
and its final rank. The rerank stage runs without a time budget here, so the scores equal those
of a ``/search`` answer that scored its whole depth (one that was not ``degraded``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from typing import Any

from bertsearch.indexer.dense import DENSE_STAGE
from bertsearch.indexer.lexical import LEXICAL_STAGE
from bertsearch.ranker.attributions import DEFAULT_STEPS, attribute
from bertsearch.ranker.cross_encoder import RERANK_STAGE
from bertsearch.ranker.fusion import FUSION_STAGE
from bertsearch.ranker.pipeline import BLEND_STAGE, PipelineConfig, SearchPipeline


class NotIndexedError(LookupError):
    """The document to explain is not in the index."""


def explain(
    pipeline: SearchPipeline,
    query: str,
    doc_id: str,
    config: PipelineConfig | None = None,
    *,
    steps: int = DEFAULT_STEPS,
) -> dict[str, Any]:
    """The explanation of ``doc_id`` for ``query`` (JSON-ready; the shape of ``POST /explain``)."""
    started = time.perf_counter()
    stored = pipeline.lexical.get([doc_id]).get(doc_id)
    if stored is None:
        raise NotIndexedError(f"no document with id {doc_id!r} in the index")
    config = replace(pipeline.resolve(config or pipeline.config), rerank_budget_ms=None)
    depth = (config.lexical_k if config.lexical else 0) + (config.dense_k if config.dense else 0)
    result = pipeline.search(query, top_k=depth, config=config)
    search_ms = (time.perf_counter() - started) * 1000
    hits = result.hits
    position = next((n for n, hit in enumerate(hits, 1) if hit.id == doc_id), None)
    explained: dict[str, Any] = {
        "query": query,
        "id": doc_id,
        "title": stored.title,
        "passage": stored.body,  # what the reranker read: the attributions' offsets point into it
        "candidates": len(hits),
        "final_rank": position,
        "final_score": hits[position - 1].score if position else None,
        "stages": _stages(hits, doc_id, config) if position else {},
        "rerank_top_n": config.rerank_top_n if result.reranked else None,
        "rerank_weight": config.rerank_weight if result.reranked else None,
    }
    start = time.perf_counter()
    matches = pipeline.lexical.explain(query, doc_id) if config.lexical else []
    explained["matched_terms"] = [asdict(m) for m in matches]
    terms_ms = (time.perf_counter() - start) * 1000
    explained["attributions"] = None
    if pipeline.reranks(config):  # a reranker whose weight is 0 here did not rank: nothing to attribute
        explained["attributions"] = attribute(pipeline.reranker, query, stored.body, steps=steps).to_dict()
    explained["ms"] = {"search": round(search_ms, 1), "terms": round(terms_ms, 1),
                       "total": round((time.perf_counter() - started) * 1000, 1)}  # fmt: skip
    return explained


def _stages(hits, doc_id: str, config: PipelineConfig) -> dict[str, dict[str, Any]]:
    """Score and rank of ``doc_id`` at each stage; the rank among the hits that stage scored."""
    stages: dict[str, dict[str, Any]] = {}
    for stage in (LEXICAL_STAGE, DENSE_STAGE, FUSION_STAGE, RERANK_STAGE, BLEND_STAGE):
        scored = [hit for hit in hits if stage in hit.scores]
        if not any(hit.id == doc_id for hit in scored):
            continue
        ranked = sorted(scored, key=lambda h: (-h.scores[stage], h.id))  # fusion breaks ties by id too
        rank = next(n for n, hit in enumerate(ranked, 1) if hit.id == doc_id)
        entry: dict[str, Any] = {"score": ranked[rank - 1].scores[stage], "rank": rank, "of": len(ranked)}
        if stage in (LEXICAL_STAGE, DENSE_STAGE) and config.lexical and config.dense:
            entry["rrf_contribution"] = 1.0 / (config.rrf_k + rank)
        stages[stage] = entry
    return stages
