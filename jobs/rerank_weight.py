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
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from indexer.documents import Hit
from jobs.beir import BeirDataset, JudgedQueries
from jobs.eval_results import ConfigRun, EvaluationResult
from jobs.evaluation import EvalConfig
from jobs.scoring import per_query_scores, ranx_run
from ranker.cross_encoder import METADATA_FILE, RERANK_STAGE, read_metadata
from ranker.pipeline import order_reranked

WEIGHTS = tuple(round(step / 10, 1) for step in range(11))
RERANKED_CONFIG = "hybrid+rerank"


@dataclass(frozen=True)
class WeightChoice:
    """The chosen weight, the metric it reached, and the metric at every weight tried."""

    weight: float
    metric: str
    value: float
    by_weight: dict[float, float]

    def describe(self) -> str:
        alone = self.by_weight.get(1.0)
        return (
            f"rerank weight {self.weight:.1f}: {self.metric} {self.value:.4f}"
            + (f" (reranker alone {alone:.4f})" if alone is not None else "")
        )


def reweighted(run: ConfigRun, weight: float) -> ConfigRun:
    """``run`` (reranked with weight 1) as it would have been served with ``weight``."""
    rankings: dict[str, list[tuple[str, float]]] = {}
    for query_id, ranking in run.rankings.items():
        hits = [
            Hit(id=doc_id, score=score, scores=stages)
            for (doc_id, score), stages in zip(ranking, run.stage_scores[query_id], strict=True)
        ]
        head = [hit for hit in hits if RERANK_STAGE in hit.scores]
        tail = [hit for hit in hits if RERANK_STAGE not in hit.scores]
        rankings[query_id] = [(hit.id, hit.score) for hit in order_reranked(head, weight) + tail]
    return replace(run, name=f"{run.name}@{weight:.1f}", rankings=rankings)


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
    best = max(by_weight, key=lambda w: (round(by_weight[w], 12), w))
    return WeightChoice(weight=best, metric=metric, value=by_weight[best], by_weight=by_weight)


def tuning_eval_config(config: EvalConfig) -> EvalConfig:
    """``config`` restricted to hybrid against hybrid+rerank with the reranker alone deciding."""
    return replace(config, configs=("hybrid", RERANKED_CONFIG), rerank_weight=1.0)


def choice_from(result: EvaluationResult, judged: JudgedQueries, metric: str = "ndcg@10") -> WeightChoice:
    """The weight chosen on the reranked run of an evaluation made with ``tuning_eval_config``."""
    run = next(run for run in result.runs if run.name == RERANKED_CONFIG)
    return choose_rerank_weight(run, judged, metric=metric)


def record_choice(model_dir: Path, choice: WeightChoice, source: dict) -> dict:
    """Write the chosen weight into ``model_dir/metadata.json`` (serving reads it from there)."""
    metadata = read_metadata(model_dir)
    metadata["rerank_weight"] = choice.weight
    metadata["rerank_weight_tuning"] = {
        **asdict(choice),
        "by_weight": {f"{w:.1f}": v for w, v in choice.by_weight.items()},
        **source,
        "tuned_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = Path(model_dir) / METADATA_FILE
    staging = path.with_suffix(".json.partial")
    staging.write_text(json.dumps(metadata, indent=2, default=str) + "\n", encoding="utf-8")
    staging.replace(path)
    return metadata


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
    p.add_argument("--rerank-top-n", type=int, default=None, help="candidates reranked (default 50)")
    p.add_argument("--metric", default="ndcg@10", help="metric to maximise (default ndcg@10)")
    p.add_argument("--out", type=Path, default=None, help="report folder (default MODEL_DIR.work/tune-SPLIT)")
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
                rerank_top_n=args.rerank_top_n,
                per_query_metric=args.metric,
            )
        )
        result = run_evaluation(
            config, progress=not args.no_progress, command=" ".join(["bertsearch", *sys.argv[1:]])
        )
        choice = choice_from(result, BeirDataset(args.dataset).load(args.split), args.metric)
        record_choice(
            args.reranker,
            choice,
            {"dataset": str(args.dataset.resolve()), "split": args.split, "report": str(out.resolve())},
        )
    except USER_ERRORS as err:
        raise UserError(str(err)) from err
    hybrid = result.config("hybrid").means.get(args.metric)
    print(choice.describe() + (f"; hybrid {hybrid:.4f}" if hybrid is not None else ""))
    for weight, value in choice.by_weight.items():
        print(f"  {weight:.1f}  {value:.4f}")
    print(f"written to {args.reranker / METADATA_FILE}")
    return 0
