"""The dev evaluation of each epoch: the ``bertsearch eval`` code on the epoch's checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from bertsearch.jobs.datasets.beir import BeirDataset
from bertsearch.jobs.evaluation.config import EvalConfig
from bertsearch.jobs.evaluation.operating_point import (
    WeightChoice,
    choice_from,
    pooled_choice,
    tuning_eval_config,
)
from bertsearch.jobs.evaluation.runner import run_evaluation


def evaluate_dev(
    model_dir: Path,
    epoch: int,
    *,
    dataset: Path,
    split: str,
    index_dir: Path,
    reports: Path,
    depth: int,
    rerank_top_n: int,
    threads: int,
    metric: str = "ndcg@10",
) -> dict[str, float]:
    """Dev metrics of the checkpoint in ``model_dir``, by the very code of ``bertsearch eval``.

    Runs ``hybrid`` and ``hybrid+rerank`` (the reranker alone deciding) on ``split``, writes the
    full report to ``reports/epoch-NNN`` and chooses the rerank weight on it
    (``jobs.evaluation.operating_point``). Returns the reranked configuration's means, the hybrid nDCG@10,
    the paired p-value of the nDCG@10 difference, the chosen ``rerank_weight`` and
    ``tuned_<metric>``, the metric at that weight.
    """
    metrics, _ = _dev_metrics(
        model_dir,
        epoch,
        dataset=dataset,
        split=split,
        index_dir=index_dir,
        reports=reports,
        depth=depth,
        rerank_top_n=rerank_top_n,
        threads=threads,
        metric=metric,
    )
    return metrics


def evaluate_dev_collections(
    model_dir: Path,
    epoch: int,
    *,
    collections: list[tuple[str, Path, str, Path]],
    reports: Path,
    depth: int,
    rerank_top_n: int,
    threads: int,
    metric: str = "ndcg@10",
) -> dict[str, float]:
    """:func:`evaluate_dev` on the dev split of each collection (name, dataset, split, index_dir)
    of a multi-collection run: every metric is the mean over the collections (each counts the
    same, whatever its number of queries), each collection's own under ``<name>:<metric>``, and
    the weight is the one best on that mean (``pooled_choice``)."""
    per: dict[str, dict[str, float]] = {}
    choices: list[WeightChoice] = []
    for name, dataset, split, index_dir in collections:
        per[name], choice = _dev_metrics(
            model_dir,
            epoch,
            dataset=dataset,
            split=split,
            index_dir=index_dir,
            reports=reports / name,
            depth=depth,
            rerank_top_n=rerank_top_n,
            threads=threads,
            metric=metric,
        )
        choices.append(choice)
    shared = set.intersection(*(set(m) for m in per.values())) - {"p_ndcg@10"}  # a mean p is no test
    metrics = {key: float(sum(m[key] for m in per.values()) / len(per)) for key in sorted(shared)}
    pooled = pooled_choice(choices)
    metrics["rerank_weight"] = pooled.weight
    metrics[f"tuned_{metric}"] = pooled.value
    for name, values in per.items():
        metrics.update(
            {
                f"{name}:{key}": values[key]
                for key in ("ndcg@10", f"tuned_{metric}", "rerank_weight")
                if key in values
            }
        )
    return metrics


def _dev_metrics(
    model_dir: Path,
    epoch: int,
    *,
    dataset: Path,
    split: str,
    index_dir: Path,
    reports: Path,
    depth: int,
    rerank_top_n: int,
    threads: int,
    metric: str,
) -> tuple[dict[str, float], WeightChoice]:
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))  # the other workers wait at the report barrier meanwhile
    try:
        result = run_evaluation(
            tuning_eval_config(
                EvalConfig(
                    dataset=dataset,
                    index_dir=index_dir,
                    out=reports / f"epoch-{epoch:03d}",
                    split=split,
                    reranker=model_dir,
                    depth=depth,
                    rerank_top_n=rerank_top_n,
                )
            ),
            progress=False,
            command=f"dev evaluation of epoch {epoch}",
        )
    finally:
        torch.set_num_threads(before)
    reranked = result.config("hybrid+rerank").means
    metrics = {name: float(value) for name, value in reranked.items()}
    metrics["hybrid_ndcg@10"] = float(result.config("hybrid").means["ndcg@10"])
    metrics["p_ndcg@10"] = float(result.comparisons[0].p_values["ndcg@10"])
    choice = choice_from(result, BeirDataset(dataset).load(split), metric)
    metrics["rerank_weight"] = choice.weight
    metrics[f"tuned_{metric}"] = choice.value
    return metrics, choice
