"""Reranking within a time budget: score candidates in fused order and stop before the budget runs out.

A :class:`PairScorer` scores a prefix of the (query, document) pairs it is given, as many as fit
before a deadline, and says why it stopped short (``budget``: the pairs would not fit in the time
left; ``queue``: the time went waiting behind other requests). The pipeline keeps the unscored
candidates in their fused order below the scored ones, so a cut answer is the fused answer with
its head reranked. :class:`ChunkedScorer` does this in the calling thread, in chunks sized from a
live estimate of its own speed; the query service uses ``api.scoring_worker.ScoringWorker``,
which does the same for all concurrent requests at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from bertsearch.ranker.cross_encoder import CrossEncoder

BUDGET = "budget"
QUEUE = "queue"
FAILURE = "failure"
DEGRADED_REASONS = (BUDGET, QUEUE, FAILURE)


@dataclass(frozen=True)
class ScoredPrefix:
    """Scores of the first ``len(scores)`` pairs; ``cut`` says why the rest went unscored (None: none did)."""

    scores: np.ndarray
    cut: str | None = None


@dataclass(frozen=True)
class RerankCoverage:
    """What the rerank stage of one answer did: pairs asked for and scored, the budget and time spent."""

    requested: int
    scored: int
    budget_ms: float | None
    spent_ms: float
    reasons: tuple[str, ...] = ()
    cached: int = 0  # of the scored, how many came from the score cache

    def to_dict(self) -> dict:
        return {
            "requested": self.requested,
            "scored": self.scored,
            "cached": self.cached,
            "budget_ms": self.budget_ms,
            "spent_ms": round(self.spent_ms, 3),
        }


class Overloaded(RuntimeError):
    """The scorer's queue is longer than it can serve in time: answer 503 instead of queueing."""

    def __init__(self, wait_seconds: float) -> None:
        self.retry_after = max(1, int(wait_seconds + 0.999))
        super().__init__(
            f"the reranker is overloaded (about {wait_seconds:.1f} s of queued work); retry after "
            f"{self.retry_after} s, or send the request with \"stages\": {{\"rerank\": false}}"
        )


@runtime_checkable
class PairScorer(Protocol):
    """Scores (query, text) pairs in order until a deadline (``time.monotonic()`` seconds; None: all)."""

    def admit(self) -> None:
        """Raise Overloaded when new work would wait too long; callers ask before they do any."""
        ...

    def score_prefix(self, pairs: Sequence[tuple[str, str]], deadline: float | None) -> ScoredPrefix: ...


CHARS_PER_TOKEN = 4  # a cheap length proxy: budgets and batches are planned before tokenizing


def pair_tokens(pair: tuple[str, str], max_length: int) -> int:
    """About how many tokens the cross-encoder reads for ``pair`` (at most ``max_length``)."""
    return min(max_length, (len(pair[0]) + len(pair[1])) // CHARS_PER_TOKEN + 3)


class SpeedEstimate:
    """A live estimate of seconds per scored token, thread-safe: it rises at once to a slower
    sample and decays towards faster ones (an exponentially weighted mean), so that a budget
    planned with it errs on the side of finishing in time.

    Per token, not per pair: a pair of long passages costs several short ones, and one estimate
    per pair planned on the long ones scores too few short ones (and the other way round overruns).
    Tokens are :func:`pair_tokens`'s estimate, the same when observing and when planning.
    Until it has seen a batch it answers ``initial`` (None: unknown, and then a budgeted scorer
    scores one batch to learn).
    """

    def __init__(self, initial: float | None = None, smoothing: float = 0.3) -> None:
        self._value = initial
        self._smoothing = smoothing
        self._lock = threading.Lock()

    @property
    def seconds_per_token(self) -> float | None:
        return self._value

    def observe(self, tokens: int, seconds: float) -> None:
        if tokens <= 0:
            return
        sample = seconds / tokens
        with self._lock:
            if self._value is None or sample > self._value:
                self._value = sample
            else:
                self._value = self._smoothing * sample + (1 - self._smoothing) * self._value

    def seconds_for(self, tokens: int) -> float | None:
        """Seconds to score ``tokens`` (None while the speed is unknown)."""
        value = self._value
        return None if value is None else tokens * value

    def pairs_within(self, costs: Sequence[int], seconds: float) -> int | None:
        """How many of the pairs costing ``costs`` tokens, taken in order, fit in ``seconds``
        (None while the speed is unknown)."""
        value = self._value
        if value is None:
            return None
        fits, spent = 0, 0.0
        for cost in costs:
            spent += cost * value
            if spent > seconds:
                break
            fits += 1
        return fits


class ChunkedScorer:
    """Score with a loaded :class:`CrossEncoder` in the calling thread, chunk by chunk (``chunk``
    pairs at most, default the encoder's batch size) until the deadline.

    Subclasses score elsewhere by overriding :meth:`_run` (``jobs.serving``: a Ray Serve
    deployment), keeping the chunking and the speed estimate.
    """

    def __init__(self, encoder: CrossEncoder, speed: SpeedEstimate | None = None, chunk: int | None = None):
        self.encoder = encoder
        self.speed = speed or SpeedEstimate()
        self.chunk = chunk or encoder.batch_size

    def admit(self) -> None:
        """No queue of its own: it scores in the caller's thread."""

    def score_prefix(self, pairs: Sequence[tuple[str, str]], deadline: float | None) -> ScoredPrefix:
        if deadline is None:
            return ScoredPrefix(self._score(pairs, None))
        costs = [pair_tokens(pair, self.encoder.max_length) for pair in pairs]
        out: list[np.ndarray] = []
        done = 0
        while done < len(pairs):
            fits = self.speed.pairs_within(costs[done : done + self.chunk], deadline - time.monotonic())
            chunk = self.chunk if fits is None else fits
            if chunk < 1:
                break
            out.append(self._score(pairs[done : done + chunk], deadline))
            done += len(out[-1])
        scores = np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
        return ScoredPrefix(scores, None if done == len(pairs) else BUDGET)

    def _score(self, pairs: Sequence[tuple[str, str]], deadline: float | None) -> np.ndarray:
        started = time.perf_counter()
        scores = self._run(list(pairs), deadline)
        tokens = sum(pair_tokens(pair, self.encoder.max_length) for pair in pairs)
        self.speed.observe(tokens, time.perf_counter() - started)
        return scores

    def _run(self, pairs: list[tuple[str, str]], deadline: float | None) -> np.ndarray:
        return self.encoder.score_pairs(pairs)
