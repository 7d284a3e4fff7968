"""One scoring worker owns the reranker: requests enqueue their pairs, it batches across requests.

Request threads never touch the tokenizer or torch: each ``score_prefix`` call puts a job (its
pairs in fused order, and its deadline) on one queue and waits. The worker thread takes pairs
first-come first-served across jobs, waits up to ``max_wait_ms`` for a batch to fill (bounded by
``max_batch_pairs`` and ``max_batch_tokens``), scores the batch in one call, and hands each job its
scores. Before a batch it drops the pairs of any job whose deadline the batch would overrun
(:data:`~bertsearch.ranker.rerank_budget.BUDGET`, or ``QUEUE`` when that job has waited behind
others without a pair scored), so every job gets a prefix of its pairs scored.

Admission: a job that arrives behind more queued work than ``max_queue_ms`` of scoring is refused
with :class:`~bertsearch.ranker.rerank_budget.Overloaded` (the route answers 503 with
Retry-After) instead of waiting for seconds. A scorer that stalls does not hold a request past
its deadline plus ``stall_ms``: the request gives up (``failure``) and is served its fused order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from bertsearch.ranker.cross_encoder import CrossEncoder
from bertsearch.ranker.rerank_budget import (
    BUDGET,
    FAILURE,
    QUEUE,
    Overloaded,
    ScoredPrefix,
    SpeedEstimate,
    pair_tokens,
)

log = logging.getLogger(__name__)

QUEUE_SHARE = 0.25  # a cut job that waited more than this share of its budget was cut by the queue


class RerankStalled(TimeoutError):
    """The worker did not answer within the request's deadline plus the stall allowance."""


@dataclass(frozen=True)
class WorkerSettings:
    """How the worker batches and when it refuses work (see the module docstring)."""

    max_batch_pairs: int = 64
    max_batch_tokens: int = 16_384
    max_wait_ms: float = 2.0
    max_queue_ms: float = 2_000.0
    stall_ms: float = 2_000.0
    unbudgeted_timeout_ms: float = 60_000.0  # a request without a budget waits at most this long

    def __post_init__(self) -> None:
        for name in ("max_batch_pairs", "max_batch_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_wait_ms", "max_queue_ms", "stall_ms", "unbudgeted_timeout_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")


@dataclass(eq=False)
class _Job:
    pairs: Sequence[tuple[str, str]]
    costs: list[int]  # each pair's tokens (``pair_tokens``), computed once by the request thread
    deadline: float | None
    enqueued: float
    scores: np.ndarray = field(init=False)
    next: int = 0  # pairs handed to a batch so far (all of them once the job is cut)
    finished_pairs: int = 0  # pairs scored so far: always a prefix
    first_batch_at: float | None = None
    cut: str | None = None
    abandoned: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.scores = np.zeros(len(self.pairs), dtype=np.float32)

    @property
    def waiting(self) -> int:
        return len(self.pairs) - self.next

    @property
    def waiting_tokens(self) -> int:
        return sum(self.costs[self.next :])


class ScoringWorker:
    """The service's :class:`~bertsearch.ranker.rerank_budget.PairScorer`: one thread owns ``encoder``.

    ``on_batch(pairs, seconds)`` is called after every batch (metrics).
    """

    def __init__(
        self,
        encoder: CrossEncoder,
        settings: WorkerSettings | None = None,
        speed: SpeedEstimate | None = None,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.encoder = encoder
        self.settings = settings or WorkerSettings()
        self.speed = speed or SpeedEstimate()
        self.batches = 0  # scored so far (metrics have the sizes)
        self._on_batch = on_batch
        self._jobs: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="scoring-worker", daemon=True)
        self._thread.start()

    # -- request side ----------------------------------------------------------------------------

    def queued_pairs(self) -> int:
        with self._cond:
            return sum(job.waiting for job in self._jobs)

    def expected_wait(self) -> float:
        """Seconds until a job enqueued now would get its first pair scored.

        The jobs ahead are served in turn, each until its pairs are scored or its deadline
        passes, whichever comes first: with budgets, the wait is bounded by the budgets ahead,
        not by the pairs they asked for.
        """
        per_token = self.speed.seconds_per_token or 0.0
        now = time.monotonic()
        ends = now
        with self._cond:
            for job in self._jobs:
                if job.abandoned:
                    continue
                finish = ends + job.waiting_tokens * per_token
                ends = finish if job.deadline is None else min(finish, max(ends, job.deadline))
        return ends - now

    def admit(self) -> None:
        """Raise Overloaded when a new job would wait longer than ``max_queue_ms``: the route asks
        before retrieval, so that a refused request costs nothing."""
        waiting = self.expected_wait()
        if waiting * 1000.0 > self.settings.max_queue_ms:
            raise Overloaded(waiting)

    def score_prefix(self, pairs: Sequence[tuple[str, str]], deadline: float | None) -> ScoredPrefix:
        if not pairs:
            return ScoredPrefix(np.zeros(0, dtype=np.float32))
        self.admit()
        costs = [pair_tokens(pair, self.encoder.max_length) for pair in pairs]
        job = _Job(pairs, costs, deadline, time.monotonic())
        with self._cond:
            if self._closed:
                raise RuntimeError("the scoring worker is shut down")
            self._jobs.append(job)
            self._cond.notify()
        limit = (
            deadline - time.monotonic() + self.settings.stall_ms / 1000.0
            if deadline is not None
            else self.settings.unbudgeted_timeout_ms / 1000.0
        )
        if not job.done.wait(max(0.0, limit)):
            with self._cond:
                job.abandoned = True
            raise RerankStalled(f"the reranker did not answer within {limit * 1000:.0f} ms")
        return ScoredPrefix(job.scores[: job.finished_pairs].copy(), job.cut)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10)

    # -- worker side -----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._jobs:
                    self._cond.wait()
                if self._closed:
                    for job in self._jobs:
                        job.done.set()
                    return
            if self.settings.max_wait_ms:
                self._fill_or_wait()
            batch = self._take_batch()
            if batch:
                self._score(batch)

    def _fill_or_wait(self) -> None:
        """Wait up to ``max_wait_ms`` for more pairs, unless a full batch is already queued."""
        end = time.monotonic() + self.settings.max_wait_ms / 1000.0
        with self._cond:
            while sum(job.waiting for job in self._jobs) < self.settings.max_batch_pairs and not self._closed:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)


    def _take_batch(self) -> list[tuple[_Job, int, int]]:
        """(job, start, stop) slices of the queued pairs, first come first served, within the
        batch bounds. A job whose deadline this batch would overrun is cut here: its remaining
        pairs go unscored."""
        limits, now = self.settings, time.monotonic()
        batch: list[tuple[_Job, int, int]] = []
        pairs = tokens = 0
        with self._cond:
            for job in list(self._jobs):
                if job.abandoned:
                    self._finish_locked(job)
                    continue
                start = stop = job.next
                full = False
                while stop < len(job.pairs):
                    cost = job.costs[stop]
                    if pairs >= limits.max_batch_pairs or (pairs and tokens + cost > limits.max_batch_tokens):
                        full = True
                        break
                    if _overruns(job.deadline, now, self.speed.seconds_for(tokens + cost)):
                        self._cut_locked(job, now)
                        break
                    pairs, tokens, stop = pairs + 1, tokens + cost, stop + 1
                if job.cut is None:
                    job.next = stop
                if stop > start:
                    job.first_batch_at = job.first_batch_at or now
                    batch.append((job, start, stop))
                elif job.next >= len(job.pairs):
                    self._finish_locked(job)  # cut before any more of its pairs made a batch
                if full:
                    break
        return batch

    def _cut_locked(self, job: _Job, now: float) -> None:
        """Leave ``job``'s remaining pairs unscored: its time went waiting (queue) or scoring (budget)."""
        waited = (job.first_batch_at or now) - job.enqueued
        budget = job.deadline - job.enqueued if job.deadline is not None else float("inf")
        job.cut = QUEUE if waited > QUEUE_SHARE * budget else BUDGET
        job.next = len(job.pairs)

    def _score(self, batch: list[tuple[_Job, int, int]]) -> None:
        pairs = [pair for job, start, stop in batch for pair in job.pairs[start:stop]]
        tokens = sum(sum(job.costs[start:stop]) for job, start, stop in batch)
        started = time.perf_counter()
        try:
            scores = self.encoder.score_pairs(pairs)
        except Exception:  # a failing batch fails its jobs' rerank, not the worker
            log.exception("scoring a batch of %d pairs failed", len(pairs))
            with self._cond:
                for job, _, _ in batch:
                    job.cut, job.next = FAILURE, len(job.pairs)
                    self._finish_locked(job)
            return
        seconds = time.perf_counter() - started
        self.speed.observe(tokens, seconds)
        self.batches += 1
        if self._on_batch is not None:
            self._on_batch(len(pairs), seconds)
        offset = 0
        with self._cond:
            for job, start, stop in batch:
                job.scores[start:stop] = scores[offset : offset + stop - start]
                offset += stop - start
                job.finished_pairs = stop
                if job.next >= len(job.pairs):
                    self._finish_locked(job)

    def _finish_locked(self, job: _Job) -> None:
        if job in self._jobs:
            self._jobs.remove(job)
        job.done.set()


def _overruns(deadline: float | None, now: float, seconds: float | None) -> bool:
    """Whether work of ``seconds`` started ``now`` ends after ``deadline`` (unknown speed: no)."""
    return deadline is not None and seconds is not None and now + seconds > deadline
