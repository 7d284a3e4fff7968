"""How much the reranker's score should count against the retrieval score, chosen on judged queries.

A cross-encoder fine-tuned on a few hundred queries ranks worse than fused BM25 + dense retrieval
on its own, yet it is often right where retrieval is unsure. Serving orders the reranked
candidates by ``weight``·minmax(rerank) + (1 − ``weight``)·minmax(retrieval)
(``ranker.pipeline.order_reranked``). The weight is chosen here on a dev split: one reranked
run (weight 1) holds every candidate's rerank and retrieval scores, so each weight of the grid
is just a re-ordering of that run, scored by the ``bertsearch eval`` code. Never tune on the
split you report.

``bertsearch train --dev-split`` does this for every epoch and writes the chosen weight into the
model's ``metadata.json``; ``bertsearch tune-rerank-weight`` does it for a model trained without one.
With ``--depths`` it also chooses how many fused candidates to rerank: a run reranked at the
largest depth holds every shallower one (``at_depth``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from indexer.documents import Hit
from jobs.beir import BeirDataset, JudgedQueries
from jobs.commands import positive_ints
from jobs.eval_results import ConfigRun, EvaluationResult
from jobs.evaluation import EvalConfig
from jobs.scoring import per_query_scores, ranx_run
from ranker.cross_encoder import METADATA_FILE, RERANK_STAGE, read_metadata
from ranker.pipeline import order_reranked, retrieval_score

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
        rankings[query_id] = [(hit.id, hit.score) for hit in order_reranked(head, weight) + tail]
    return replace(run, name=f"{run.name}@{weight:.1f}", rankings=rankings)


def _split_reranked(run: ConfigRun, query_id: str) -> tuple[list[Hit], list[Hit]]:
    """One query's hits of ``run``: those the reranker scored, and the rest, each in served order."""
    hits = [
        Hit(id=doc_id, score=score, scores=stages)
        for (doc_id, score), stages in zip(run.rankings[query_id], run.stage_scores[query_id], strict=True)
    ]
    return [h for h in hits if RERANK_STAGE in h.scores], [h for h in hits if RERANK_STAGE not in h.scores]


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
        raise ValueError(f"run {run.name!r} carries no stage scores; run it through jobs.evaluation.retrieve")
    qrels = Qrels(judged.qrels)
    query_ids = list(judged.queries)
    by_weight: dict[float, float] = {}
    for weight in weights:
        per_query = per_query_scores(qrels, ranx_run(reweighted(run, weight), qrels), [metric])[metric]
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
        ordered = order_reranked(fused[:top_n], 1.0) + demoted + rest
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


def record_choice(model_dir: Path, choice: WeightChoice, source: dict) -> dict:
    """Write the chosen weight into ``model_dir/metadata.json`` (serving reads it from there)."""
    metadata = read_metadata(model_dir)
    metadata["rerank_weight"] = choice.weight
    if choice.depth is not None:
        metadata["rerank_top_n"] = choice.depth
    metadata["rerank_weight_tuning"] = choice_record(choice, source)
    _write_json(Path(model_dir) / METADATA_FILE, metadata)
    return metadata


def _write_json(path: Path, data: dict) -> None:
    staging = path.with_suffix(".json.partial")
    staging.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    staging.replace(path)


# -- command line -------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune-rerank-weight",
        help="choose the reranker's weight against retrieval on a judged dev split",
        description="Rerank a judged split once, try rerank weights 0.0-1.0 on it, and write the "
        "best into MODEL_DIR/metadata.json, where `serve` and `eval` read it. Use a dev split, "
        "never the one you report.",
    )
    p.add_argument("dataset", type=Path, help="BEIR folder with the judged split")
    p.add_argument("--split", required=True, help="judged dev split to tune on (not your test split)")
    p.add_argument("--reranker", type=Path, required=True, help="MODEL_DIR from `bertsearch train`")
    p.add_argument("--index-dir", type=Path, required=True, help="index of the dataset's corpus")
    p.add_argument("--depth", type=int, default=100, help="candidates per retriever (default 100)")
    depth = p.add_mutually_exclusive_group()
    depth.add_argument("--rerank-top-n", type=int, default=None, help="candidates reranked (default 50)")
    depth.add_argument(
        "--depths",
        type=positive_ints("depths", "10,20,30"),
        default=None,
        help="also choose how many candidates to rerank, among these (e.g. 10,20,30,40,50): the "
        "largest is reranked once and the others re-ordered from it; the choice is written as rerank_top_n",
    )
    p.add_argument("--metric", default="ndcg@10", help="metric to maximise (default ndcg@10)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"report folder, with the choice and its tables in {CHOICE_FILE} "
        "(default MODEL_DIR.work/tune-SPLIT)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help=f"choose and report, but leave MODEL_DIR/metadata.json as it is (OUT/{CHOICE_FILE} can then "
        "be pooled by `transfer-rerank-weight`)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=command)


def command(args: argparse.Namespace) -> int:
    from jobs.commands import USER_ERRORS, UserError
    from jobs.evaluation import run_evaluation

    out = args.out or args.reranker.with_name(args.reranker.name + ".work") / f"tune-{args.split}"
    try:
        config = tuning_eval_config(
            EvalConfig(
                dataset=args.dataset,
                index_dir=args.index_dir,
                out=out,
                split=args.split,
                reranker=args.reranker,
                depth=args.depth,
                rerank_top_n=max(args.depths) if args.depths else args.rerank_top_n,
                per_query_metric=args.metric,
            )
        )
        result = run_evaluation(
            config, progress=not args.no_progress, command=" ".join(["bertsearch", *sys.argv[1:]])
        )
        choice = choice_from(result, BeirDataset(args.dataset).load(args.split), args.metric, args.depths)
        hybrid = result.config("hybrid").means.get(args.metric)
        source = {
            "dataset": str(args.dataset.resolve()),
            "split": args.split,
            "report": str(out.resolve()),
            "reranker": str(args.reranker.resolve()),
            "hybrid": hybrid,
        }
        _write_json(out / CHOICE_FILE, choice_record(choice, source))
        if not args.dry_run:
            record_choice(args.reranker, choice, source)
    except USER_ERRORS as err:
        raise UserError(str(err)) from err
    print(choice.describe() + (f"; hybrid {hybrid:.4f}" if hybrid is not None else ""))
    print_tables(choice)
    print(f"choice and tables in {out / CHOICE_FILE}")
    if not args.dry_run:
        print(f"written to {args.reranker / METADATA_FILE}")
    return 0


def print_tables(choice: WeightChoice) -> None:
    """The metric at every depth (rows) and weight (columns) ``choice`` was made from."""
    tables = choice.by_depth or {choice.depth: choice.by_weight}
    weights = list(next(iter(tables.values())))
    print("  depth " + " ".join(f"{w:6.1f}" for w in weights))
    for depth, by_weight in tables.items():
        print(f"  {depth!s:>5} " + " ".join(f"{by_weight[w]:.4f}" for w in weights))

