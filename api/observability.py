"""What the service tells its operators: Prometheus metrics at ``/metrics`` and a JSON access log.

Every app has its own registry (tests build many apps in one process). Per request, the
middleware assigns a request id (the client's ``X-Request-ID`` when it is a sane token, else a
new one), returns it in the same header, times the request by route and status, and writes one
JSON line to the ``bertsearch.access`` logger. The search route reports what each answer's
stages took and what its rerank stage scored.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from starlette.requests import Request
from starlette.responses import Response

from bertsearch.ranker.pipeline import SearchResult
from bertsearch.ranker.rerank_budget import DEGRADED_REASONS

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
access_log = logging.getLogger("bertsearch.access")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 256)


class Metrics:
    """The service's metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Histogram(
            "bertsearch_http_request_duration_seconds", "HTTP request latency", ["route", "method", "status"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.stages = Histogram(
            "bertsearch_stage_duration_seconds", "time per search stage", ["stage"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.rerank_requested = Counter(
            "bertsearch_rerank_pairs_requested", "candidates the rerank stage was asked to score", registry=r
        )
        self.rerank_scored = Counter(
            "bertsearch_rerank_pairs_scored", "candidates the rerank stage scored", registry=r
        )
        self.rerank_cached = Counter(  # the score cache's hit rate: cached / scored
            "bertsearch_rerank_pairs_cached", "scored candidates whose score came from the score cache",
            registry=r,
        )
        self.degraded = Counter(
            "bertsearch_degraded_answers", "answers served with less than asked for", ["reason"], registry=r
        )
        for reason in DEGRADED_REASONS:
            self.degraded.labels(reason)  # every reason shows, at 0, before it first happens
        self.batch_pairs = Histogram(
            "bertsearch_rerank_batch_pairs", "pairs per scoring-worker batch",
            buckets=BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_pairs = Gauge(
            "bertsearch_rerank_queue_pairs", "pairs waiting for the scoring worker", registry=r
        )
        self.index = Info("bertsearch_index", "the index version served", registry=r)
        self.reranker = Info("bertsearch_reranker", "the reranker served", registry=r)

    def observe_answer(self, result: SearchResult) -> None:
        for stage, ms in result.timings_ms.items():
            self.stages.labels(stage).observe(ms / 1000.0)
        if result.rerank is not None:
            self.rerank_requested.inc(result.rerank.requested)
            self.rerank_scored.inc(result.rerank.scored)
            self.rerank_cached.inc(result.rerank.cached)
        for reason in result.degraded_reasons:
            self.degraded.labels(reason).inc()

    def observe_batch(self, pairs: int, seconds: float) -> None:
        self.batch_pairs.observe(pairs)

    def watch_queue(self, pairs: Callable[[], int]) -> None:
        self.queue_pairs.set_function(pairs)


def request_id(request: Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER)
    return given if given and _SANE_ID.match(given) else uuid.uuid4().hex


async def observe_requests(request: Request, call_next) -> Response:
    """HTTP middleware: request id, latency by route and status, one JSON access-log line."""
    rid = request_id(request)
    request.state.request_id = rid
    started = time.perf_counter()
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
        response.headers[REQUEST_ID_HEADER] = rid
        return response
    finally:
        seconds = time.perf_counter() - started
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        metrics: Metrics | None = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            metrics.requests.labels(template, request.method, str(status)).observe(seconds)
        access_log.info(json.dumps({
            "request_id": rid, "method": request.method, "route": template, "path": request.url.path,
            "status": status, "ms": round(seconds * 1000.0, 2),
            **({"degraded": request.state.degraded} if getattr(request.state, "degraded", None) else {}),
        }))  # fmt: skip
