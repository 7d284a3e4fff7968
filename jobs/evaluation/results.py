"""The results of an offline evaluation, as plain frozen dataclasses.

``ConfigRun`` is what one configuration returned (rankings, stage scores, timings);
``ConfigScores``, ``Comparison`` (with its ``QueryDelta`` lists) and ``Slice`` are what scoring
makes of the runs; ``EvaluationResult`` gathers them with the run's identity and turns itself
into JSON-ready data (``to_dict``, via ``_jsonable``) for the report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from bertsearch.ranker.pipeline import PipelineConfig

# -- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigRun:
    """What one configuration returned: ranked (doc id, score) lists by query, and stage timings.

    ``stage_scores`` holds, by query, each ranked hit's score from every stage (``Hit.scores``),
    parallel to ``rankings``: what re-weighting the reranker offline needs.
    """

    name: str
    pipeline: PipelineConfig
    rankings: dict[str, list[tuple[str, float]]]
    timings_ms: list[dict[str, float]]
    wall_seconds: float
    notes: tuple[str, ...] = ()
    stage_scores: dict[str, list[dict[str, float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class QueryDelta:
    id: str
    text: str
    baseline: float
    value: float
    delta: float


@dataclass(frozen=True)
class ConfigScores:
    name: str
    pipeline: dict
    means: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    per_query: dict[str, dict[str, float]]
    recall_curve: dict[int, float]
    latency_ms: dict[str, dict[str, float]]
    wall_seconds: float
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comparison:
    """One configuration against the baseline (the first configuration)."""

    name: str
    baseline: str
    p_values: dict[str, float]
    significant: dict[str, bool]
    wins_ties_losses: dict[str, dict[str, int]]
    helped: list[QueryDelta]
    hurt: list[QueryDelta]


@dataclass(frozen=True)
class Slice:
    """The queries of one length bucket (words in the query, bounds inclusive)."""

    bucket: str
    min_words: int
    max_words: int
    queries: int
    means: dict[str, dict[str, float]]


@dataclass(frozen=True)
class EvaluationResult:
    identity: dict
    metrics: tuple[str, ...]
    per_query_metric: str
    stat_test: str
    max_p: float
    configs: list[ConfigScores]
    comparisons: list[Comparison]
    slices: list[Slice]
    queries: dict[str, str] = field(default_factory=dict)
    # The runs themselves, for callers that re-score them (not part of the report).
    runs: list[ConfigRun] = field(default_factory=list, repr=False)

    @property
    def baseline(self) -> str:
        return self.configs[0].name

    def config(self, name: str) -> ConfigScores:
        for scores in self.configs:
            if scores.name == name:
                return scores
        raise KeyError(f"no configuration {name!r} in this result; have {[c.name for c in self.configs]}")

    def to_dict(self) -> dict:
        report = asdict(replace(self, runs=[]))
        del report["runs"]
        return _jsonable(report)


def _jsonable(value):
    """Dataclass dicts to JSON: int keys to strings, tuples to lists, NaN to None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value
