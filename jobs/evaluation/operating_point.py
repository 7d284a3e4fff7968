"""How much the reranker's score should count against the retrieval score, chosen on judged queries.

A cross-encoder fine-tuned on a few hundred queries ranks worse than fused BM25 + dense retrieval
on its own, yet it is often right where retrieval is unsure. Serving orders the reranked
candidates by ``weight``·minmax(rerank) + (1 − ``weight``)·minmax(retrieval)
(``bertsearch.ranker.pipeline.order_reranked``). The weight is chosen here on a dev split: one reranked
run (weight 1) holds every candidate's rerank and retrieval scores, so each weight of the grid
is just a re-ordering of that run, scored by the ``bertsearch eval`` code. Never tune on the
split you report.

``bertsearch train --dev-split`` does this for every epoch and writes the chosen weight into the
model's ``metadata.json``; ``bertsearch tune-rerank-weight`` does it for a model trained without one.
With ``--depths`` it also chooses how many fused candidates to rerank: a run reranked at the
largest depth holds every shallower one (``at_depth``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bertsearch.indexer import atomic
from bertsearch.indexer.documents import Hit
from bertsearch.jobs.datasets.beir import BeirDataset, JudgedQueries
from bertsearch.jobs.evaluation.config import EvalConfig, check_choice_split
from bertsearch.jobs.evaluation.results import ConfigRun, EvaluationResult
from bertsearch.jobs.evaluation.runner import run_evaluation
from bertsearch.jobs.evaluation.scoring import per_query_scores, ranx_run
from bertsearch.ranker.cross_encoder import RERANK_STAGE
from bertsearch.ranker.model_dir import ModelRecord
from bertsearch.ranker.pipeline import merge_reranked, order_reranked, retrieval_score

WEIGHTS = tuple(round(step / 10, 1) for step in range(11))
DEPTHS = (10, 20, 30, 40, 50)
RERANKED_CONFIG = "hybrid+rerank"
CHOICE_FILE = "choice.json"


@dataclass(frozen=True)
class WeightChoice:
    """The chosen weight, the metric it reached, and the metric at every weight tried.

    ``depth``: the number of fused candidates reranked (``rerank_top_n``) the choice holds for;
    ``by_depth``: when several depths were tried, the metric at every weight for each.
    """

    weight: float
    metric: str
    value: float
    by_weight: dict[float, float]
    depth: int | None = None
    by_depth: dict[int, dict[float, float]] = field(default_factory=dict)

    def describe(self) -> str:
        alone = self.by_weight.get(1.0)
        return (
            f"rerank weight {self.weight:.1f}"
            + (f" over the top {self.depth}" if self.depth is not None else "")
            + f": {self.metric} {self.value:.4f}"
            + (f" (reranker alone {alone:.4f})" if alone is not None else "")
        )


def reweighted(run: ConfigRun, weight: float) -> ConfigRun:
    """``run`` (reranked with weight 1) as it would have been served with ``weight``."""
    rankings: dict[str, list[tuple[str, float]]] = {}
    for query_id in run.rankings:
        head, tail = _split_reranked(run, query_id)
        served = merge_reranked(order_reranked(head, weight), tail)
        rankings[query_id] = [(hit.id, hit.score) for hit in served]
    return replace(run, name=f"{run.name}@{weight:.1f}", rankings=rankings)


def _split_reranked(run: ConfigRun, query_id: str) -> tuple[list[Hit], list[Hit]]:
    """One query's hits of ``run``: those the reranker scored, and the rest, each in served order."""
    hits = [
        Hit(id=doc_id, score=score, scores=stages)
        for (doc_id, score), stages in zip(run.rankings[query_id], run.stage_scores[query_id], strict=True)
    ]
    return [h for h in hits if RERANK_STAGE in h.scores], [h for h in hits if RERANK_STAGE not in h.scores]


def per_query_at(
    run: ConfigRun, qrels, metric: str, weight: float, depth: int | None = None
) -> dict[str, float]:
    """Per-query ``metric`` of ``run`` (reranked with weight 1) as served at ``weight`` (and, given
    ``depth``, with only its ``depth`` best fused candidates reranked); ``qrels`` a ranx Qrels."""
    served = reweighted(at_depth(run, depth) if depth is not None else run, weight)
    return per_query_scores(qrels, ranx_run(served, qrels), [metric])[metric]


def choose_rerank_weight(
    run: ConfigRun, judged: JudgedQueries, *, metric: str = "ndcg@10", weights=WEIGHTS
) -> WeightChoice:
    """The weight of ``weights`` whose re-ordering of ``run`` scores best on ``judged``.

    ``run`` must come from a reranking configuration served with weight 1 (so its final order
    is the reranker's). Ties go to the larger weight: the reranker was trained to be used.
    """
    from ranx import Qrels

    if not run.pipeline.rerank or run.pipeline.rerank_weight != 1.0:
        raise ValueError(f"run {run.name!r} must rerank with rerank_weight 1.0 to be re-weighted")
    if not run.stage_scores:
        raise ValueError(
            f"run {run.name!r} carries no stage scores; run it through jobs.evaluation.runner.retrieve"
        )
    qrels = Qrels(judged.qrels)
    query_ids = list(judged.queries)
    by_weight: dict[float, float] = {}
    for weight in weights:
        per_query = per_query_at(run, qrels, metric, weight)
        by_weight[float(weight)] = float(np.mean([per_query.get(q, 0.0) for q in query_ids]))
    best = _best_weight(by_weight)
    return WeightChoice(
        weight=best,
        metric=metric,
        value=by_weight[best],
        by_weight=by_weight,
        depth=run.pipeline.rerank_top_n,
    )


def _best_weight(by_weight: dict[float, float]) -> float:
    """Ties go to the larger weight: the reranker was trained to be used."""
    return max(by_weight, key=lambda w: (round(by_weight[w], 12), w))


def _best_depth(choices: dict[int, WeightChoice]) -> int:
    """Ties go to the smaller depth: the same quality for less reranking."""
    return max(choices, key=lambda depth: (round(choices[depth].value, 12), -depth))


def at_depth(run: ConfigRun, top_n: int) -> ConfigRun:
    """``run`` (reranked with weight 1) as if only its ``top_n`` best fused candidates had been reranked.

    The candidates reranked beyond ``top_n`` go back to their fused order below the reranked
    ones, as serving would leave them. ``run`` must have reranked at least ``top_n``.
    """
    rankings: dict[str, list[tuple[str, float]]] = {}
    stage_scores: dict[str, list[dict[str, float]]] = {}
    for query_id in run.rankings:
        reranked, rest = _split_reranked(run, query_id)
        if len(reranked) < top_n and rest:
            raise ValueError(
                f"run {run.name!r} reranked {len(reranked)} candidates of query {query_id!r}; "
                f"rerank at least {top_n} to try that depth"
            )
        fused = sorted(reranked, key=lambda hit: (-retrieval_score(hit), hit.id))  # fusion's order
        demoted = [
            Hit(
                id=hit.id,
                score=retrieval_score(hit),
                scores={k: v for k, v in hit.scores.items() if k != RERANK_STAGE},
            )
            for hit in fused[top_n:]
        ]
        ordered = merge_reranked(order_reranked(fused[:top_n], 1.0), demoted + rest)
        rankings[query_id] = [(hit.id, hit.score) for hit in ordered]
        stage_scores[query_id] = [dict(hit.scores) for hit in ordered]
    return replace(
        run,
        name=f"{run.name}@top{top_n}",
        pipeline=replace(run.pipeline, rerank_top_n=top_n),
        rankings=rankings,
        stage_scores=stage_scores,
    )


def choose_operating_point(
    run: ConfigRun, judged: JudgedQueries, *, depths=DEPTHS, metric: str = "ndcg@10", weights=WEIGHTS
) -> WeightChoice:
    """The (rerank depth, weight) pair whose re-ordering of ``run`` scores best on ``judged``.

    ``run`` must have reranked at least ``max(depths)`` candidates with weight 1. Ties go to the
    smaller depth: the same quality for less reranking.
    """
    choices = {
        depth: choose_rerank_weight(at_depth(run, depth), judged, metric=metric, weights=weights)
        for depth in sorted(depths)
    }
    best = _best_depth(choices)
    return replace(choices[best], depth=best, by_depth={d: c.by_weight for d, c in choices.items()})


def pooled_choice(choices: Sequence[WeightChoice]) -> WeightChoice:
    """The (depth, weight) whose mean metric over several judged sets' choices is best.

    For a reranker whose own corpus has no judgments: each of ``choices`` holds the tables of a
    model trained the same way on another, judged corpus (``tune-rerank-weight --dry-run``),
    and the operating point that served those best on average is taken. Each set counts the
    same, whatever its number of queries. Only depths and weights every set tried are pooled;
    the tie rules are those of ``choose_operating_point``.
    """
    if not choices:
        raise ValueError("pool at least one weight choice")
    metrics = {choice.metric for choice in choices}
    if len(metrics) > 1:
        raise ValueError(f"the choices optimised different metrics ({', '.join(sorted(metrics))}); pool one")
    if any(choice.depth is None for choice in choices):
        raise ValueError("a table has no rerank depth; tune it with --depths or --rerank-top-n")
    tables = [choice.by_depth or {choice.depth: choice.by_weight} for choice in choices]
    depths = set.intersection(*(set(table) for table in tables))
    weights = set.intersection(*(set(by_weight) for table in tables for by_weight in table.values()))
    if not depths or not weights:
        raise ValueError("the choices share no rerank depth and weight; tune them on a common grid")
    pooled = {}
    for depth in sorted(depths):
        by_weight = {w: float(np.mean([table[depth][w] for table in tables])) for w in sorted(weights)}
        best = _best_weight(by_weight)
        pooled[depth] = WeightChoice(
            weight=best, metric=choices[0].metric, value=by_weight[best], by_weight=by_weight, depth=depth
        )
    best = _best_depth(pooled)
    return replace(pooled[best], by_depth={d: c.by_weight for d, c in pooled.items()})


def tuning_eval_config(config: EvalConfig) -> EvalConfig:
    """``config`` restricted to hybrid against hybrid+rerank with the reranker alone deciding."""
    return replace(config, configs=("hybrid", RERANKED_CONFIG), rerank_weight=1.0)


def choice_from(
    result: EvaluationResult, judged: JudgedQueries, metric: str = "ndcg@10", depths=None
) -> WeightChoice:
    """The weight (and, given ``depths``, the depth) chosen on the reranked run of an evaluation
    made with ``tuning_eval_config``."""
    run = next(run for run in result.runs if run.name == RERANKED_CONFIG)
    if depths:
        return choose_operating_point(run, judged, depths=depths, metric=metric)
    return choose_rerank_weight(run, judged, metric=metric)


def choice_record(choice: WeightChoice, source: dict) -> dict:
    """``choice`` and where it was made, as JSON (``choice_from_record`` reads it back)."""
    return {
        **asdict(choice),
        "by_weight": {f"{w:.1f}": v for w, v in choice.by_weight.items()},
        "by_depth": {str(d): {f"{w:.1f}": v for w, v in t.items()} for d, t in choice.by_depth.items()},
        **source,
        "tuned_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def choice_from_record(record: dict) -> WeightChoice:
    def weights(table: dict) -> dict[float, float]:
        return {float(w): float(v) for w, v in table.items()}

    return WeightChoice(
        weight=float(record["weight"]),
        metric=record["metric"],
        value=float(record["value"]),
        by_weight=weights(record["by_weight"]),
        depth=record.get("depth"),
        by_depth={int(d): weights(t) for d, t in record.get("by_depth", {}).items()},
    )


def record_choice(
    model_dir: Path, choice: WeightChoice, source: dict, max_length: int | None = None
) -> ModelRecord:
    """Write the chosen weight (and depth, and length) into ``model_dir/metadata.json``, where
    serving reads them."""
    record = ModelRecord.require(model_dir).with_operating_point(
        choice.weight, choice.depth, choice_record(choice, source), max_length=max_length
    )
    record.write(model_dir)
    return record


@dataclass(frozen=True)
class TuneResult:
    choice: WeightChoice
    hybrid: float | None  # the metric of hybrid retrieval alone on the same queries
    choice_file: Path
    record: ModelRecord | None  # what was written into the model folder; None on a dry run
    max_length: int | None = None  # the length chosen, when lengths were tried
    by_length: dict[int, float] = field(default_factory=dict)  # the best metric at each length tried


def tune(
    config: EvalConfig,
    *,
    depths: Sequence[int] | None = None,
    lengths: Sequence[int] | None = None,
    dry_run: bool = False,
    allow_test_split: bool = False,
    progress: bool = True,
    command: str | None = None,
) -> TuneResult:
    """Rerank ``config``'s split once, choose the weight (and, with ``depths``, the depth) on it,
    write the choice with its tables to ``config.out/choice.json`` and, unless ``dry_run``, into
    the model folder. ``config.per_query_metric`` is the metric maximised.

    With ``lengths`` (tokens per pair), the split is reranked once per length (reports in
    ``config.out/max-length-N``) and the length whose best point is best is kept, the shortest of
    equals since it is the cheapest; it is written as the model's ``max_length``, the length
    serving reads. Shorter pairs cost less but see less of each document; this measures the trade.

    Refuses a split named ``test`` unless ``allow_test_split`` (a choice made on the split one
    reports is no longer a test of it); an allowed one is recorded in the choice.
    """
    check_choice_split(config.split, allow_test_split, what="tune-rerank-weight --split")
    if config.reranker is None:
        raise ValueError("give the reranker to tune (--reranker MODEL_DIR)")
    if not dry_run:
        ModelRecord.require(config.reranker)  # fail before the evaluation, not after it
    length, by_length = None, {}
    if lengths:
        at = {
            n: _choose(replace(config, rerank_max_length=n, out=Path(config.out) / f"max-length-{n}"),
                       depths, progress, command)
            for n in sorted(set(lengths))
        }  # fmt: skip
        by_length = {n: choice.value for n, (choice, _, _) in at.items()}
        length = max(by_length, key=by_length.__getitem__)  # ascending keys: the shortest of equals
        choice, hybrid, source = at[length]
        source = {**source, "max_length": length, "by_length": {str(n): v for n, v in by_length.items()}}
    else:
        choice, hybrid, source = _choose(config, depths, progress, command)
    choice_file = Path(config.out) / CHOICE_FILE
    atomic.write_json(choice_file, choice_record(choice, source))
    record = None if dry_run else record_choice(config.reranker, choice, source, max_length=length)
    return TuneResult(choice, hybrid, choice_file, record, max_length=length, by_length=by_length)


def _choose(
    config: EvalConfig, depths: Sequence[int] | None, progress: bool, command: str | None
) -> tuple[WeightChoice, float | None, dict]:
    """One reranked run of ``config``'s split: the choice made on it, hybrid's metric, and where."""
    config = tuning_eval_config(replace(config, rerank_top_n=max(depths) if depths else config.rerank_top_n))
    result = run_evaluation(config, progress=progress, command=command)
    metric = config.per_query_metric
    choice = choice_from(result, BeirDataset(config.dataset).load(config.split), metric, depths)
    hybrid = result.config("hybrid").means.get(metric)
    source = {
        "dataset": str(Path(config.dataset).resolve()),
        "split": config.split,
        "report": str(Path(config.out).resolve()),
        "reranker": str(Path(config.reranker).resolve()),
        "hybrid": hybrid,
        "corpus": result.identity.get("corpus"),  # the point is in-domain for the corpus it was tuned on
        **({"chosen_on_test_split": True} if config.split.lower() == "test" else {}),
    }
    return choice, hybrid, source
