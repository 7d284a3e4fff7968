"""What the service serves, and how it takes up a new index version without dropping a request.

The routes read ``app.state.serving`` once per request and use that one :class:`ServingState`
(pipeline + snapshot) to the end, so a request never mixes two versions. A :class:`VersionWatcher`
polls the directory's CURRENT pointer; when it names a new version, the watcher opens it beside
the served one (reusing the loaded encoder and reranker), warms it up, and then replaces the
reference in one assignment. Requests already running finish on the old state; the old
pipeline is closed only after a grace period.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from bertsearch.api.scoring_worker import ScoringWorker, WorkerSettings
from bertsearch.api.settings import ServiceSettings
from bertsearch.indexer.embedder import Embedder
from bertsearch.indexer.snapshot import IndexSnapshot
from bertsearch.indexer.versions import IndexDirectory
from bertsearch.ranker.cross_encoder import CrossEncoder
from bertsearch.ranker.factory import open_pipeline
from bertsearch.ranker.pipeline import PipelineConfig, SearchPipeline
from bertsearch.ranker.rerank_budget import PairScorer

log = logging.getLogger(__name__)

RETIRE_GRACE_SECONDS = 60.0  # far longer than any request: then nothing uses a retired pipeline


@dataclass(frozen=True)
class ServingState:
    """One loaded pipeline and the index version behind it."""

    pipeline: SearchPipeline
    snapshot: IndexSnapshot
    settings: ServiceSettings
    encoder_fingerprint: str

    @property
    def version(self) -> str:
        return self.snapshot.manifest.version


# Builds the scorer of the served reranker; given the CrossEncoder (weights loaded or not).
ScorerFactory = Callable[[CrossEncoder], PairScorer]


def load_serving(
    settings: ServiceSettings,
    on_batch: Callable[[int, float], None] | None = None,
    scorer_factory: ScorerFactory | None = None,
) -> ServingState:
    """Open the current version with freshly loaded models, hand the reranker to one scoring
    worker (``on_batch`` sees each of its batches), and warm it up.

    With ``scorer_factory`` (Ray Serve: the reranker is a deployment of its own) the reranker's
    weights are not loaded here; the factory's scorer scores its pairs.
    """
    snapshot = IndexSnapshot.open(settings.index_dir)
    pipeline = open_pipeline(
        settings.index_dir,
        encoder_model=settings.encoder_model,
        reranker=settings.reranker,
        snapshot=snapshot,
        config=PipelineConfig(rerank_budget_ms=settings.rerank_budget_ms or None),
        load_reranker_weights=scorer_factory is None,
    )
    if pipeline.reranker is not None and scorer_factory is not None:
        pipeline.scorer = scorer_factory(pipeline.reranker)
    elif pipeline.reranker is not None:
        pipeline.scorer = ScoringWorker(
            pipeline.reranker,
            WorkerSettings(
                max_batch_pairs=settings.rerank_batch_pairs,
                max_wait_ms=settings.rerank_batch_wait_ms,
                max_queue_ms=settings.rerank_max_queue_ms,
            ),
            on_batch=on_batch,
        )
    # Before taking traffic: torch's first forward pass pays ~1 s of lazy set-up, and the
    # scoring worker learns its speed (unbudgeted, so the whole depth is scored).
    pipeline.search("warm up", top_k=1, config=replace(pipeline.config, rerank_budget_ms=None))
    return ServingState(pipeline, snapshot, settings, pipeline.encoder.fingerprint())


def switch_version(current: ServingState, snapshot: IndexSnapshot) -> ServingState:
    """A state serving ``snapshot`` with ``current``'s models; ModelMismatchError if they do not fit."""
    encoder: Embedder = current.pipeline.encoder
    snapshot.check_encoder(current.encoder_fingerprint, encoder.model_name)
    pipeline = SearchPipeline(
        snapshot.lexical,
        snapshot.dense,
        encoder,
        current.pipeline.reranker,
        current.pipeline.config,
        scorer=current.pipeline.scorer,  # the one scoring worker stays
    )
    pipeline.search("warm up", top_k=1)
    return ServingState(pipeline, snapshot, current.settings, current.encoder_fingerprint)


@dataclass
class _Retired:
    pipeline: SearchPipeline
    since: float


@dataclass
class VersionWatcher:
    """Keeps ``holder.serving`` on the directory's current version.

    ``holder`` is any object with a ``serving`` attribute (the app's ``state``). ``check()`` may
    be called from any thread: the polling thread, or a write route that has just published.
    A version that cannot be served (another model, a broken folder) is logged, reported by
    ``last_error`` and skipped until CURRENT names another one; the served version stays.
    """

    holder: object
    interval: float
    last_error: str | None = None
    _failed: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _retired: list[_Retired] = field(default_factory=list)

    def check(self) -> bool:
        """Switch to the current version if it is not the served one; True if a switch happened."""
        with self._lock:
            current: ServingState = self.holder.serving
            directory = IndexDirectory(current.settings.index_dir)
            name = directory.current_name()
            if name is None or name == current.version or name == self._failed:
                self._close_retired()
                return False
            try:
                snapshot = IndexSnapshot.open_version(directory.versions_dir / name)
                fresh = switch_version(current, snapshot)
            except Exception as err:  # keep serving what works; say why the new version is not served
                self._failed, self.last_error = name, f"version {name} not served: {err}"
                log.error("%s", self.last_error)
                return False
            self.holder.serving = fresh  # one assignment: each request sees the old or the new state
            self._failed, self.last_error = None, None
            self._retired.append(_Retired(current.pipeline, time.monotonic()))
            log.info("now serving index version %s (was %s)", name, current.version)
            self._close_retired()
            return True

    def _close_retired(self) -> None:
        now = time.monotonic()
        keep = []
        for retired in self._retired:
            if now - retired.since >= RETIRE_GRACE_SECONDS:
                retired.pipeline.close()
            else:
                keep.append(retired)
        self._retired = keep

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="index-version-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # a watcher that dies silently would freeze the served version
                log.exception("checking for a new index version failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for retired in self._retired:
            retired.pipeline.close()
        self._retired = []
