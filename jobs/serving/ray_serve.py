"""The query service on Ray Serve: N replicas of the same FastAPI app, and the reranker as a
deployment of its own that batches requests with ``@serve.batch``.

Each ingress replica runs ``api.app.create_app`` (retrieval, fusion, the routes, metrics) with the
reranker's settings but not its weights; its pairs go to the :class:`Reranker` deployment, which
batches the calls of all replicas (``max_batch_size`` pairs lists, ``batch_wait_timeout_s``) and
holds the only copy of the model (one GPU per replica where the cluster has GPUs). The budget
works as in the plain server: :class:`RemoteScorer` sends the pairs in chunks sized by its speed
estimate and stops before the deadline; a reranker that fails or does not answer in time costs
the answer its rerank, and Serve's back-pressure becomes a 503 with Retry-After.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray import serve

from bertsearch.api.app import create_app
from bertsearch.api.settings import ServiceSettings
from bertsearch.ranker.cross_encoder import CrossEncoder
from bertsearch.ranker.registry import resolve_reranker
from bertsearch.ranker.rerank_budget import ChunkedScorer, Overloaded

log = logging.getLogger(__name__)

APP_NAME = "bertsearch"
STALL_SECONDS = 2.0  # beyond the deadline, how long an answer waits for a reranker that stalls
UNBUDGETED_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class ServeLayout:
    """Replicas and resources. ``reranker_gpus`` None: one GPU per reranker replica when the
    cluster has GPUs, else none. ``max_replicas`` above ``replicas`` turns on Serve's autoscaling
    of the ingress between the two."""

    replicas: int = 2
    max_replicas: int | None = None
    ingress_cpus: float = 0.25
    reranker_replicas: int = 1
    reranker_cpus: float = 1.0
    reranker_gpus: float | None = None
    batch_size: int = 8  # requests per @serve.batch call
    batch_wait_ms: float = 2.0

    def __post_init__(self) -> None:
        if self.replicas < 1 or self.reranker_replicas < 1:
            raise ValueError("replicas and reranker_replicas must be at least 1")
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) must be at least replicas ({self.replicas})"
            )
        if self.ingress_cpus <= 0 or self.reranker_cpus <= 0:
            raise ValueError("ingress_cpus and reranker_cpus must be positive (fractions are fine)")


@serve.deployment
class Reranker:
    """The cross-encoder, once: ``score`` batches the pairs lists of concurrent calls."""

    def __init__(self, model_dir: str, batch_size: int, batch_wait_ms: float) -> None:
        self.encoder = CrossEncoder(model_dir).load()
        self.score.set_max_batch_size(batch_size)
        self.score.set_batch_wait_timeout_s(batch_wait_ms / 1000.0)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.002)
    async def score(self, requests: list[list[tuple[str, str]]]) -> list[np.ndarray]:
        flat = [pair for pairs in requests for pair in pairs]
        scores = self.encoder.score_pairs(flat)
        out, start = [], 0
        for pairs in requests:
            out.append(scores[start : start + len(pairs)])
            start += len(pairs)
        return out


class RemoteScorer(ChunkedScorer):
    """A ``PairScorer`` whose chunks are scored by the Reranker deployment behind ``handle``."""

    def __init__(self, encoder: CrossEncoder, handle: Any, chunk: int = 16) -> None:
        super().__init__(encoder, chunk=chunk)
        self.handle = handle

    def _run(self, pairs: list[tuple[str, str]], deadline: float | None) -> np.ndarray:
        from ray.serve.exceptions import BackPressureError

        timeout = (
            max(0.001, deadline - time.monotonic()) + STALL_SECONDS if deadline is not None
            else UNBUDGETED_TIMEOUT_SECONDS
        )  # fmt: skip
        try:
            return np.asarray(self.handle.score.remote(pairs).result(timeout_s=timeout), dtype=np.float32)
        except BackPressureError as err:
            raise Overloaded(1.0) from err


@serve.deployment
@serve.ingress()
class SearchIngress:
    """One replica of the query service; ``__serve_build_asgi_app__`` builds it at replica start."""

    def __init__(self, settings: dict[str, Any], reranker: Any = None) -> None:
        self.settings = ServiceSettings(**settings)
        self.reranker = reranker

    def __serve_build_asgi_app__(self):
        if self.reranker is None:
            return create_app(self.settings)
        return create_app(self.settings, scorer_factory=lambda encoder: RemoteScorer(encoder, self.reranker))


def application(settings: ServiceSettings, layout: ServeLayout):
    """The Serve application: the ingress deployment bound to the reranker deployment (if any)."""
    ingress_options: dict[str, Any] = {"ray_actor_options": {"num_cpus": layout.ingress_cpus}}
    if layout.max_replicas is not None and layout.max_replicas > layout.replicas:
        ingress_options["autoscaling_config"] = {
            "min_replicas": layout.replicas, "max_replicas": layout.max_replicas,
        }  # fmt: skip
    else:
        ingress_options["num_replicas"] = layout.replicas
    # A reranker registry is read once: Serve deploys the version it serves now (a promotion
    # takes effect on the next `serve --ray-serve`; the plain server switches by itself).
    settings = settings.model_copy(update={"reranker": resolve_reranker(settings.reranker)[0]})
    plain = settings.model_dump(mode="json")
    reranker = None
    if settings.reranker:
        gpus = layout.reranker_gpus
        if gpus is None:
            import ray

            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        reranker = Reranker.options(
            num_replicas=layout.reranker_replicas,
            ray_actor_options={"num_cpus": layout.reranker_cpus, "num_gpus": gpus},
        ).bind(settings.reranker, layout.batch_size, layout.batch_wait_ms)
    return SearchIngress.options(**ingress_options).bind(plain, reranker)


def run(settings: ServiceSettings, layout: ServeLayout, *, host: str, port: int, blocking: bool = True):
    """Start Serve's HTTP proxy on ``host:port`` and deploy; with ``blocking``, serve until interrupted."""
    serve.start(http_options={"host": host, "port": port})
    handle = serve.run(application(settings, layout), name=APP_NAME, route_prefix="/")
    if blocking:
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            serve.shutdown()
    return handle
