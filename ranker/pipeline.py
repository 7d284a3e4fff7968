"""The search pipeline: lexical and dense retrieval, fusion, cross-encoder rerank.

The same object serves ``POST /search`` and runs offline evaluation, so an evaluated
configuration is a served one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from bertsearch.indexer.dense import DENSE_STAGE, DenseIndex
from bertsearch.indexer.documents import Document, Hit
from bertsearch.indexer.embedder import Embedder
from bertsearch.indexer.lexical import LEXICAL_STAGE, LexicalIndex
from bertsearch.ranker.cross_encoder import RERANK_STAGE, CrossEncoder
from bertsearch.ranker.fusion import FUSION_STAGE, ReciprocalRankFusion, interpolate
from bertsearch.ranker.rerank_budget import (
    FAILURE,
    ChunkedScorer,
    Overloaded,
    PairScorer,
    RerankCoverage,
    ScoredPrefix,
)
from bertsearch.ranker.score_cache import ScoreCache

log = logging.getLogger(__name__)

BLEND_STAGE = "blend"
TAIL_GAP = 1e-3  # how far below the last reranked hit the first unreranked one scores

NO_RERANKER_NOTE = (
    "rerank skipped: no trained reranker is configured (start the service with --reranker MODEL_DIR)"
)
ZERO_WEIGHT_NOTE = (
    "rerank skipped: the reranker's weight is 0 here (its operating point for this corpus, or the "
    "request's rerank_weight), so its scores could not change the order"
)


@dataclass(frozen=True)
class PipelineConfig:
    """Which stages run and how deep. Impossible combinations are refused at construction.

    ``lexical_k``/``dense_k``: candidates each retriever returns; ``rrf_k``: the fusion constant;
    ``rerank_top_n``: how many fused candidates the cross-encoder re-scores (the rest keep their
    fused order below them); ``rerank_weight``: how much the reranker's score counts against the
    retrieval score in the final order of those candidates (1: the reranker alone). None, for
    either, means the reranker's own setting, the one it was tuned with (``CrossEncoder``).
    ``rerank_budget_ms``: the time the rerank stage may take (None: no limit, every candidate is
    scored); candidates it leaves unscored keep their fused order below the scored ones.
    """

    lexical: bool = True
    dense: bool = True
    rerank: bool = True
    lexical_k: int = 100
    dense_k: int = 100
    rrf_k: int = 60
    rerank_top_n: int | None = None
    rerank_weight: float | None = None
    rerank_budget_ms: float | None = None

    def __post_init__(self) -> None:
        if not (self.lexical or self.dense):
            raise ValueError("at least one retriever must be on: set lexical or dense to true")
        for name in ("lexical_k", "dense_k", "rerank_top_n"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 1000:
                raise ValueError(f"{name} must be between 1 and 1000, got {value}")
        if self.rrf_k < 0:
            raise ValueError(f"rrf_k must be non-negative, got {self.rrf_k}")
        if self.rerank_weight is not None and not 0.0 <= self.rerank_weight <= 1.0:
            raise ValueError(f"rerank_weight must be between 0 and 1, got {self.rerank_weight}")
        if self.rerank_budget_ms is not None and not self.rerank_budget_ms > 0:
            raise ValueError(
                f"rerank_budget_ms must be positive (or None: no limit), got {self.rerank_budget_ms}"
            )

    def with_overrides(self, **changes: Any) -> PipelineConfig:
        """A copy with the given settings changed; ``None`` values leave a setting as it is."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown pipeline settings {sorted(unknown)}; known: {sorted(known)}")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def name(self) -> str:
        parts = [p for p, on in (("bm25", self.lexical), ("dense", self.dense)) if on]
        label = "hybrid" if len(parts) == 2 else parts[0]
        return label + ("+rerank" if self.rerank else "")


@dataclass(frozen=True)
class SearchResult:
    """One answer. ``rerank`` says what the rerank stage scored (None when it did not run);
    ``degraded_reasons`` why the answer is less than asked for (``budget``, ``queue``, ``failure``)."""

    hits: list[Hit]
    documents: dict[str, Document]
    reranked: bool
    timings_ms: dict[str, float]
    notes: list[str] = field(default_factory=list)
    rerank: RerankCoverage | None = None

    @property
    def degraded_reasons(self) -> tuple[str, ...]:
        return self.rerank.reasons if self.rerank is not None else ()

    @property
    def degraded(self) -> bool:
        return bool(self.degraded_reasons)


class SearchPipeline:
    """Compose retrieval, fusion and rerank over loaded parts.

    ``encoder`` must be the model the dense index was built with (see IndexSnapshot.check_encoder);
    ``reranker`` may be None, in which case the rerank stage is skipped and results say so.
    ``scorer`` scores the reranker's pairs (default: a :class:`ChunkedScorer` of ``reranker`` in
    the calling thread; the query service hands it its scoring worker). ``score_cache`` keeps the
    reranker's scores of pairs seen before (``ranker.score_cache``; None: every pair is scored).
    ``corpus`` is the index's ``Manifest.corpus()``: it decides the reranker's operating point.
    """

    def __init__(
        self,
        lexical: LexicalIndex,
        dense: DenseIndex | None,
        encoder: Embedder | None,
        reranker: CrossEncoder | None = None,
        config: PipelineConfig | None = None,
        scorer: PairScorer | None = None,
        score_cache: ScoreCache | None = None,
        corpus: Mapping[str, Any] | None = None,
    ) -> None:
        if (dense is None) != (encoder is None):
            raise ValueError("a dense index and its query encoder go together: give both or neither")
        self.lexical = lexical
        self.dense = dense
        self.encoder = encoder
        self.reranker = reranker
        # (rerank_top_n, rerank_weight, domain) the reranker serves on this index's corpus: its
        # unseen-corpus point when it was not trained on it (ModelRecord.operating_point)
        self.rerank_point = reranker.record.operating_point(corpus) if reranker is not None else None
        self.scorer = scorer if scorer is not None else (ChunkedScorer(reranker) if reranker else None)
        self.score_cache = score_cache
        self.config = config or PipelineConfig(dense=dense is not None)
        self._dense_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dense")
        self.check(self.config)

    def check(self, config: PipelineConfig) -> None:
        """Raise ValueError if ``config`` asks for a stage this pipeline has no parts for."""
        if config.dense and self.dense is None:
            raise ValueError("dense retrieval is on but this pipeline has no dense index")

    def resolve(self, config: PipelineConfig) -> PipelineConfig:
        """``config`` with the rerank settings it leaves to the reranker filled in from it."""
        if self.reranker is None:
            return config
        top_n, weight, _ = self.rerank_point
        return replace(
            config,
            rerank_top_n=config.rerank_top_n or top_n,
            rerank_weight=weight if config.rerank_weight is None else config.rerank_weight,
        )

    def reranks(self, config: PipelineConfig) -> bool:
        """Whether a search with ``config`` runs the rerank stage. Not when the weight it resolves
        to is 0 (a point tuned, or a rule chosen leave-one-corpus-out, may say the reranker should
        not count on this corpus): scoring would cost the whole stage and change nothing."""
        return self.reranker is not None and config.rerank and self.resolve(config).rerank_weight > 0.0

    def search(self, query: str, top_k: int = 10, config: PipelineConfig | None = None) -> SearchResult:
        """The ``top_k`` best documents for ``query``."""
        config = config or self.config
        self.check(config)
        started = time.perf_counter()
        timings: dict[str, float] = {}
        dense_future = self._dense_pool.submit(self._dense_one, query, config) if config.dense else None
        rankings = []
        if config.lexical:
            start = time.perf_counter()
            rankings.append(self.lexical.search(query, config.lexical_k))
            timings[LEXICAL_STAGE] = _ms(start)
        if dense_future is not None:
            dense_hits, dense_timings = dense_future.result()
            rankings.append(dense_hits)
            timings.update(dense_timings)
        return self._finish(query, rankings, top_k, config, timings, started)

    def search_many(
        self, queries: Sequence[str], top_k: int = 10, config: PipelineConfig | None = None
    ) -> list[SearchResult]:
        """Like ``search`` for each query, but encoding queries in batches (offline evaluation).

        Batched stage times are divided evenly among the queries of the batch.
        """
        config = config or self.config
        self.check(config)
        dense_rankings: list[list[Hit]] = [[] for _ in queries]
        shared: dict[str, float] = {}
        if config.dense and queries:
            start = time.perf_counter()
            vectors = self.encoder.embed(list(queries))
            shared["encode"] = _ms(start) / len(queries)
            start = time.perf_counter()
            dense_rankings = self.dense.search(vectors, config.dense_k)
            shared[DENSE_STAGE] = _ms(start) / len(queries)
        results = []
        for query, dense_hits in zip(queries, dense_rankings, strict=True):
            started = time.perf_counter() - sum(shared.values()) / 1000.0
            timings = dict(shared)
            rankings = []
            if config.lexical:
                start = time.perf_counter()
                rankings.append(self.lexical.search(query, config.lexical_k))
                timings[LEXICAL_STAGE] = _ms(start)
            if config.dense:
                rankings.append(dense_hits)
            results.append(self._finish(query, rankings, top_k, config, timings, started))
        return results

    def _dense_one(self, query: str, config: PipelineConfig) -> tuple[list[Hit], dict[str, float]]:
        start = time.perf_counter()
        vector = self.encoder.embed([query])
        encoded = time.perf_counter()
        hits = self.dense.search(vector, config.dense_k)[0]
        return hits, {"encode": _ms(start, encoded), DENSE_STAGE: _ms(encoded)}

    def _finish(
        self,
        query: str,
        rankings: list[list[Hit]],
        top_k: int,
        config: PipelineConfig,
        timings: dict[str, float],
        started: float,
    ) -> SearchResult:
        if len(rankings) > 1:
            start = time.perf_counter()
            candidates = ReciprocalRankFusion(config.rrf_k).fuse(rankings)
            timings[FUSION_STAGE] = _ms(start)
        else:
            candidates = rankings[0]
        notes: list[str] = []
        will_rerank = self.reranks(config)
        config = self.resolve(config)
        if config.rerank and self.reranker is not None and not will_rerank:
            notes.append(ZERO_WEIGHT_NOTE)
        wanted = candidates[: max(top_k, config.rerank_top_n if will_rerank else 0)]
        start = time.perf_counter()
        documents = self.lexical.get([hit.id for hit in wanted])
        timings["fetch"] = _ms(start)
        coverage = None
        if config.rerank and self.reranker is None:
            notes.append(NO_RERANKER_NOTE)
        elif will_rerank and candidates:
            start = time.perf_counter()
            candidates, coverage = self._rerank(query, candidates, documents, config)
            timings[RERANK_STAGE] = _ms(start)
        hits = candidates[:top_k]
        timings["total"] = _ms(started)
        return SearchResult(
            hits=hits,
            documents={hit.id: documents[hit.id] for hit in hits if hit.id in documents},
            reranked=coverage is not None and coverage.scored > 0,
            timings_ms=timings,
            notes=notes,
            rerank=coverage,
        )

    def _rerank(
        self, query: str, candidates: list[Hit], documents: dict[str, Document], config: PipelineConfig
    ) -> tuple[list[Hit], RerankCoverage]:
        """The candidates with the head reranked as far as the budget allows, and what was done.

        A failing scorer costs the answer its rerank, never the answer: the fused order is served,
        flagged ``failure``. Overloaded (the service's queue is full) is the caller's to answer.
        """
        head = [hit for hit in candidates[: config.rerank_top_n] if hit.id in documents]
        budget = config.rerank_budget_ms
        started = time.monotonic()
        deadline = started + budget / 1000.0 if budget is not None else None
        cached = self._cached(query, head)
        missing = [hit for hit, score in zip(head, cached, strict=True) if score is None]
        try:
            prefix = self.scorer.score_prefix([(query, documents[hit.id].body) for hit in missing], deadline)
        except Overloaded:
            raise
        except Exception:  # noqa: BLE001 - any scorer failure degrades this answer, never fails it
            log.exception("rerank failed for query %r: serving the fused order", query[:80])
            prefix = ScoredPrefix(scores=np.zeros(0, dtype=np.float32), cut=FAILURE)
        fresh = {hit.id: float(s) for hit, s in zip(missing, prefix.scores, strict=False)}
        if self.score_cache is not None and fresh:
            self.score_cache.put_many(query, fresh)
        # The scored hits stay a prefix of the fused order: a cached score past the first hit the
        # budget left unscored is not used, so unscored hits always sit below scored ones.
        scores = []
        for hit, score in zip(head, cached, strict=True):
            score = score if score is not None else fresh.get(hit.id)
            if score is None:
                break
            scores.append(score)
        scored = head[: len(scores)]
        rescored = order_reranked(
            [hit.with_stage(RERANK_STAGE, score) for hit, score in zip(scored, scores, strict=True)],
            config.rerank_weight,
        )
        scored_ids = {hit.id for hit in scored}
        ordered = merge_reranked(rescored, [hit for hit in candidates if hit.id not in scored_ids])
        coverage = RerankCoverage(
            requested=len(head),
            scored=len(scored),
            cached=sum(score is not None for score in cached[: len(scored)]),
            budget_ms=budget,
            spent_ms=(time.monotonic() - started) * 1000.0,
            reasons=(prefix.cut,) if prefix.cut else (),
        )
        return ordered, coverage

    def _cached(self, query: str, head: list[Hit]) -> list[float | None]:
        if self.score_cache is None:
            return [None] * len(head)
        return self.score_cache.get_many(query, [hit.id for hit in head])

    def close(self) -> None:
        self._dense_pool.shutdown(wait=False)


def order_reranked(head: Sequence[Hit], weight: float) -> list[Hit]:
    """Hits carrying a ``rerank`` score, in their final order for a rerank weight.

    Weight 1 orders by the reranker's score alone (it stays the final score); below 1 the final
    score is ``interpolate`` of the rerank and retrieval scores, kept as the ``blend`` stage.
    Offline tuning re-orders the hits of one reranked run with this for every candidate weight.
    """
    if weight < 1.0:
        blended = interpolate(
            [hit.scores[RERANK_STAGE] for hit in head], [retrieval_score(hit) for hit in head], weight
        )
        head = [hit.with_stage(BLEND_STAGE, score) for hit, score in zip(head, blended, strict=True)]
    return sorted(head, key=lambda hit: (-hit.score, hit.id))


def merge_reranked(head: Sequence[Hit], tail: Sequence[Hit]) -> list[Hit]:
    """The served list: the reranked ``head`` in its order, then ``tail`` (not reranked) in fused order.

    Reranked and fused scores are on different scales, so the tail's final ``score`` is its
    retrieval score shifted to sit just below the last reranked hit, differences kept: ``score``
    never increases down the list, and a client (or ``trec_eval``) sorting by it gets the served
    order. The tail's own retrieval scores stay in ``scores``.
    """
    head, tail = list(head), list(tail)
    if not head or not tail:
        return head + tail
    top = retrieval_score(tail[0])
    floor = head[-1].score - TAIL_GAP
    return head + [replace(hit, score=floor - (top - retrieval_score(hit))) for hit in tail]


def retrieval_score(hit: Hit) -> float:
    """The score a hit had before reranking: fused when both retrievers ran, else its retriever's."""
    for stage in (FUSION_STAGE, LEXICAL_STAGE, DENSE_STAGE):
        if stage in hit.scores:
            return hit.scores[stage]
    raise ValueError(f"hit {hit.id!r} carries no retrieval score (stages: {sorted(hit.scores)})")


def _ms(start: float, end: float | None = None) -> float:
    return round(((end if end is not None else time.perf_counter()) - start) * 1000.0, 3)
