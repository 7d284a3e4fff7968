"""Scoring evaluation runs with ranx: metrics, significance, confidence intervals, slices.

``score`` turns the ``ConfigRun`` of every configuration into an ``EvaluationResult``: ranx's
per-query metrics and their means with percentile-bootstrap 95% intervals, the Recall@k curve,
stage latencies, each configuration compared with the first (paired p-values, wins/ties/losses,
most helped and hurt queries) and query-length slices. The Recall@k cutoffs and the bootstrap
sample count it uses are defined here; the metric names and tests in ``jobs.evaluation.config``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from bertsearch.jobs.datasets.beir import JudgedQueries
from bertsearch.jobs.evaluation.config import METRICS, STAT_TESTS, EvalConfig
from bertsearch.jobs.evaluation.results import (
    Comparison,
    ConfigRun,
    ConfigScores,
    EvaluationResult,
    QueryDelta,
    Slice,
)

RECALL_CUTOFFS = (1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 500, 1000)
LENGTH_BUCKETS = ("short", "medium", "long")
BOOTSTRAP_SAMPLES = 1000


# -- scoring ------------------------------------------------------------------------------------


def ranx_run(run: ConfigRun, qrels):
    """A ranx Run of ``run`` in served order, with every qrels query present (empty if no hits)."""
    from ranx import Run

    scored = {
        query_id: {doc_id: float(len(hits) - rank) for rank, (doc_id, _) in enumerate(hits)}
        for query_id, hits in run.rankings.items()
    }
    ranx = Run(scored, name=run.name)
    return ranx.make_comparable(qrels)


def per_query_scores(qrels, run, metrics: Sequence[str]) -> dict[str, dict[str, float]]:
    """ranx's score of every query for every metric: metric -> query id -> value."""
    from ranx import evaluate

    evaluate(qrels, run, list(metrics), return_mean=False, save_results_in_run=True)
    return {m: {q: float(v) for q, v in run.scores[m].items()} for m in metrics}


def paired_p_value(control: np.ndarray, treatment: np.ndarray, test: str, seed: int = 42) -> float:
    """ranx's two-sided paired test p-value; 1.0 when every paired difference is zero.

    The t-test is undefined (0/0) for identical score lists; no difference is no evidence of
    one, so they get p = 1, which is also what the randomisation test gives.
    """
    from ranx.statistical_tests import fisher_randomization_test, paired_student_t_test

    control = np.asarray(control, dtype=np.float64)
    treatment = np.asarray(treatment, dtype=np.float64)
    if np.array_equal(control, treatment):
        return 1.0
    if test == "student":
        p_value, _ = paired_student_t_test(control, treatment)
    elif test == "fisher":
        p_value, _ = fisher_randomization_test(control, treatment, 10000, 0.05, seed)
    else:
        raise ValueError(f"stat_test must be one of {', '.join(STAT_TESTS)}, not {test!r}")
    return float(p_value) if np.isfinite(p_value) else 1.0


def bootstrap_ci(
    values: np.ndarray, *, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES
) -> tuple[float, float]:
    """A 95% percentile-bootstrap confidence interval of the mean over queries."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return (float(low), float(high))


def length_buckets(queries: dict[str, str]) -> dict[str, list[str]]:
    """Queries split into short / medium / long at the tertiles of their word counts.

    Tertiles of this split's own queries, so every collection gets three comparable groups;
    many queries of one length can leave a bucket small or empty.
    """
    lengths = {q: len(text.split()) for q, text in queries.items()}
    values = np.array(sorted(lengths.values()))
    low, high = np.quantile(values, [1 / 3, 2 / 3], method="lower") if len(values) else (0, 0)
    buckets: dict[str, list[str]] = {name: [] for name in LENGTH_BUCKETS}
    for query_id, length in lengths.items():
        name = "short" if length <= low else "medium" if length <= high else "long"
        buckets[name].append(query_id)
    return buckets


def score(judged: JudgedQueries, runs: list[ConfigRun], config: EvalConfig) -> EvaluationResult:
    """Score every run with ranx and compare each one with the first."""
    from ranx import Qrels

    qrels = Qrels(judged.qrels)
    query_ids = list(judged.queries)
    cutoffs = [k for k in RECALL_CUTOFFS if k <= config.depth]
    curve_metrics = [f"recall@{k}" for k in cutoffs]
    all_scores: list[ConfigScores] = []
    for run in runs:
        ranx = ranx_run(run, qrels)
        per_query = per_query_scores(qrels, ranx, [*METRICS, *curve_metrics])
        means = {m: float(np.mean([per_query[m][q] for q in query_ids])) for m in per_query}
        all_scores.append(
            ConfigScores(
                name=run.name,
                pipeline=asdict(run.pipeline),
                means={m: means[m] for m in METRICS},
                ci95={m: bootstrap_ci(_vector(per_query[m], query_ids), seed=config.seed) for m in METRICS},
                per_query={m: per_query[m] for m in METRICS},
                recall_curve={k: means[f"recall@{k}"] for k in cutoffs},
                latency_ms=latency(run.timings_ms),
                wall_seconds=run.wall_seconds,
                notes=run.notes,
            )
        )
    baseline = all_scores[0]
    comparisons = [compare(baseline, other, judged.queries, config) for other in all_scores[1:]]
    slices = []
    for bucket, members in length_buckets(judged.queries).items():
        words = [len(judged.queries[q].split()) for q in members]
        slices.append(
            Slice(
                bucket=bucket,
                min_words=min(words, default=0),
                max_words=max(words, default=0),
                queries=len(members),
                means={
                    s.name: {
                        m: float(np.mean([s.per_query[m][q] for q in members])) if members else float("nan")
                        for m in METRICS
                    }
                    for s in all_scores
                },
            )
        )
    return EvaluationResult(
        identity={},
        metrics=METRICS,
        per_query_metric=config.per_query_metric,
        stat_test=config.stat_test,
        max_p=config.max_p,
        configs=all_scores,
        comparisons=comparisons,
        slices=slices,
        queries=dict(judged.queries),
    )


def compare(
    baseline: ConfigScores, other: ConfigScores, queries: dict[str, str], config: EvalConfig
) -> Comparison:
    query_ids = list(queries)
    p_values, significant, wtl = {}, {}, {}
    for metric in METRICS:
        control = _vector(baseline.per_query[metric], query_ids)
        treatment = _vector(other.per_query[metric], query_ids)
        p_values[metric] = paired_p_value(control, treatment, config.stat_test, seed=config.seed)
        significant[metric] = p_values[metric] <= config.max_p
        delta = treatment - control
        wtl[metric] = {
            "wins": int(np.sum(delta > 0)),
            "ties": int(np.sum(delta == 0)),
            "losses": int(np.sum(delta < 0)),
        }
    metric = config.per_query_metric
    deltas = [
        QueryDelta(
            id=q,
            text=queries[q],
            baseline=baseline.per_query[metric][q],
            value=other.per_query[metric][q],
            delta=other.per_query[metric][q] - baseline.per_query[metric][q],
        )
        for q in query_ids
    ]
    helped = sorted((d for d in deltas if d.delta > 0), key=lambda d: (-d.delta, d.id))[: config.top_queries]
    hurt = sorted((d for d in deltas if d.delta < 0), key=lambda d: (d.delta, d.id))[: config.top_queries]
    return Comparison(
        name=other.name,
        baseline=baseline.name,
        p_values=p_values,
        significant=significant,
        wins_ties_losses=wtl,
        helped=helped,
        hurt=hurt,
    )


def latency(timings: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and 95th percentile of each stage's milliseconds over the queries that ran it."""
    stages = dict.fromkeys(stage for t in timings for stage in t)
    out = {}
    for stage in stages:
        values = np.array([t[stage] for t in timings if stage in t], dtype=np.float64)
        out[stage] = {
            "mean": round(float(values.mean()), 3),
            "p95": round(float(np.percentile(values, 95)), 3),
        }
    return out


def _vector(per_query: dict[str, float], query_ids: list[str]) -> np.ndarray:
    return np.array([per_query[q] for q in query_ids], dtype=np.float64)
