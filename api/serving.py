"""What the service serves, and how it takes up a new index or reranker version without
dropping a request.

The routes read ``app.state.serving`` once per request and use that one :class:`ServingState`
(pipeline + snapshot + reranker) to the end, so a request never mixes two versions. A
:class:`VersionWatcher` polls the index directory's CURRENT pointer and, when the service's
reranker is a registry (``ranker.registry``), the registry's; when one names a new version,
the watcher opens it beside the served one (a new index reuses the loaded models; a new
reranker gets its own scoring worker), warms it up, and then replaces the reference in one
assignment. Requests already running finish on the old state; the old pipeline (and scoring
worker) is closed only after a grace period.
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
from bertsearch.ranker.registry import RerankerRegistry, resolve_reranker
from bertsearch.ranker.rerank_budget import PairScorer
from bertsearch.ranker.score_cache import ScoreCache

log = logging.getLogger(__name__)

RETIRE_GRACE_SECONDS = 60.0  # far longer than any request: then nothing uses a retired pipeline


# Builds the scorer of the served reranker; given the CrossEncoder (weights loaded or not).
ScorerFactory = Callable[[CrossEncoder], PairScorer]


@dataclass(frozen=True)
class ServingState:
    """One loaded pipeline, the index version behind it, and which reranker it serves.

    ``reranker_version``: the registry version served (None: a plain model folder, or none);
    ``make_scorer`` builds the scorer of a newly taken-up reranker.
    """

    pipeline: SearchPipeline
    snapshot: IndexSnapshot
    settings: ServiceSettings
    encoder_fingerprint: str
    reranker_path: str | None = None
    reranker_version: str | None = None
    make_scorer: Callable[[CrossEncoder], ScoringWorker] | None = None

    @property
    def version(self) -> str:
        return self.snapshot.manifest.version

    @property
    def reranker_id(self) -> str | None:
        """What the logs and metrics call the served reranker: its registry version, or its path."""
        return self.reranker_version or self.reranker_path


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
    path, version = resolve_reranker(settings.reranker)
    pipeline = open_pipeline(
        settings.index_dir,
        encoder_model=settings.encoder_model,
        reranker=path,
        snapshot=snapshot,
        config=PipelineConfig(rerank_budget_ms=settings.rerank_budget_ms or None),
        load_reranker_weights=scorer_factory is None,
    )

    def worker(cross_encoder: CrossEncoder) -> ScoringWorker:
        settings_ = WorkerSettings(
            max_batch_pairs=settings.rerank_batch_pairs,
            max_wait_ms=settings.rerank_batch_wait_ms,
            max_queue_ms=settings.rerank_max_queue_ms,
        )
        return ScoringWorker(cross_encoder, settings_, on_batch=on_batch)

    if pipeline.reranker is not None:
        pipeline.scorer = (scorer_factory or worker)(pipeline.reranker)
    _warm_up(pipeline)
    pipeline.score_cache = _score_cache(settings)  # after the warm-up: its pair is not a user's
    # A Ray Serve reranker deployment serves the weights it was deployed with: no switching here.
    make_scorer = worker if scorer_factory is None else None
    fingerprint = pipeline.encoder.fingerprint()
    return ServingState(pipeline, snapshot, settings, fingerprint, path, version, make_scorer)


def _score_cache(settings: ServiceSettings) -> ScoreCache | None:
    """A fresh, empty score cache: one per index version and reranker (a switch empties it)."""
    return ScoreCache(settings.rerank_cache_entries) if settings.rerank_cache_entries else None


def _warm_up(pipeline: SearchPipeline) -> None:
    # Before taking traffic: torch's first forward pass pays ~1 s of lazy set-up, and the
    # scoring worker learns its speed (unbudgeted, so the whole depth is scored).
    pipeline.search("warm up", top_k=1, config=replace(pipeline.config, rerank_budget_ms=None))


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
        corpus=snapshot.manifest.corpus(),  # another corpus may mean another operating point
    )
    _warm_up(pipeline)
    pipeline.score_cache = _score_cache(current.settings)
    return replace(current, pipeline=pipeline, snapshot=snapshot)


def switch_reranker(current: ServingState, path: str | None, version: str | None) -> ServingState:
    """A state serving the reranker at ``path`` (None: none, hybrid) with its own scoring worker,
    over ``current``'s index and encoder."""
    old = current.pipeline
    reranker = CrossEncoder(path).load() if path is not None else None
    scorer = current.make_scorer(reranker) if reranker is not None else None
    pipeline = SearchPipeline(old.lexical, old.dense, old.encoder, reranker, old.config, scorer=scorer,
                              corpus=current.snapshot.manifest.corpus())  # fmt: skip
    try:
        _warm_up(pipeline)
    except Exception:
        if scorer is not None:
            scorer.close()
        raise
    pipeline.score_cache = _score_cache(current.settings)
    return replace(current, pipeline=pipeline, reranker_path=path, reranker_version=version)


@dataclass
class _Retired:
    pipeline: SearchPipeline
    since: float
    scorer: ScoringWorker | None = None  # closed with the pipeline: a replaced reranker's own worker

    def close(self) -> None:
        self.pipeline.close()
        if self.scorer is not None:
            self.scorer.close()


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
    _failed_reranker: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _retired: list[_Retired] = field(default_factory=list)

    def check(self) -> bool:
        """Switch to the current index and reranker versions where they are not the served ones;
        True if a switch happened."""
        with self._lock:
            switched = self._check_index()
            switched = self._check_reranker() or switched
            self._close_retired()
            return switched

    def _check_index(self) -> bool:
        current: ServingState = self.holder.serving
        directory = IndexDirectory(current.settings.index_dir)
        name = directory.current_name()
        if name is None or name == current.version or name == self._failed:
            return False
        try:
            snapshot = IndexSnapshot.open_version(directory.versions_dir / name)
            fresh = switch_version(current, snapshot)
        except Exception as err:  # keep serving what works; say why the new version is not served
            self._failed, self.last_error = name, f"version {name} not served: {err}"
            log.error("%s", self.last_error)
            return False
        self._replace(current, fresh, scorer_replaced=False)
        log.info("now serving index version %s (was %s)", name, current.version)
        return True

    def _check_reranker(self) -> bool:
        current: ServingState = self.holder.serving
        configured = current.settings.reranker
        if current.make_scorer is None or configured is None or not RerankerRegistry.holds(configured):
            return False
        name = RerankerRegistry(configured).current_name()
        if name == current.reranker_version or (name is not None and name == self._failed_reranker):
            return False
        try:
            path, version = resolve_reranker(configured)
            fresh = switch_reranker(current, path, version)
        except Exception as err:  # keep serving the old reranker; say why the new one is not
            self._failed_reranker, self.last_error = name, f"reranker version {name} not served: {err}"
            log.error("%s", self.last_error)
            return False
        self._replace(current, fresh, scorer_replaced=True)
        log.info("now serving reranker %s (was %s)", version or "none (hybrid)", current.reranker_id)
        return True

    def _replace(self, current: ServingState, fresh: ServingState, *, scorer_replaced: bool) -> None:
        self.holder.serving = fresh  # one assignment: each request sees the old or the new state
        self._failed = self._failed_reranker = self.last_error = None
        old = current.pipeline.scorer
        old_worker = old if scorer_replaced and isinstance(old, ScoringWorker) else None
        self._retired.append(_Retired(current.pipeline, time.monotonic(), old_worker))

    def _close_retired(self) -> None:
        now = time.monotonic()
        keep = []
        for retired in self._retired:
            if now - retired.since >= RETIRE_GRACE_SECONDS:
                retired.close()
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
                log.exception("checking for a new index or reranker version failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for retired in self._retired:
            retired.close()
        self._retired = []
