"""Offline relevance evaluation: run named pipeline configurations over a BEIR split and score them.

``run_evaluation(EvalConfig(...))`` is the job: it finds (or builds) an index of the dataset's
corpus, opens the very ``SearchPipeline`` that serves ``POST /search``, runs every judged query
of the split through each configuration with ``search_many``, writes a TREC run file per
configuration, scores the runs with ranx, compares each configuration with the first one
(ranx's paired significance tests, per-query wins/ties/losses, most helped and hurt queries,
query-length slices), and writes the report (see bertsearch.jobs.evaluation.report).

Metrics come from ranx, never from hand-written formulas. ranx is fed the served order: each
hit's ranx score is derived from its rank, so score ties are evaluated in the order the pipeline
returned them (the TREC files keep the pipeline's own scores).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from tqdm.auto import tqdm

from bertsearch.jobs.datasets.beir import BeirDataset, JudgedQueries
from bertsearch.jobs.evaluation.config import RUNS_DIR, EvalConfig
from bertsearch.jobs.evaluation.identity import describe
from bertsearch.jobs.evaluation.report import write_report
from bertsearch.jobs.evaluation.results import ConfigRun, EvaluationResult
from bertsearch.jobs.evaluation.scoring import score
from bertsearch.jobs.indexing.reuse import ensure_index
from bertsearch.ranker.factory import open_pipeline
from bertsearch.ranker.pipeline import PipelineConfig, SearchPipeline, SearchResult

log = logging.getLogger(__name__)

WARMUP_QUERIES = 4


def run_evaluation(
    config: EvalConfig, *, progress: bool = True, command: str | None = None
) -> EvaluationResult:
    """Evaluate every configuration of ``config`` and write the report, run files and plots.

    Raises DatasetError (the split or a file is missing), ValueError (a bad configuration),
    UntrainedRerankerError (the reranker has no trained head).
    """
    started = time.perf_counter()
    dataset = BeirDataset(config.dataset)
    judged = dataset.load(config.split)
    pipeline_configs = config.pipeline_configs()
    snapshot, built = ensure_index(
        dataset, config.index_dir, model=config.model, precision=config.precision, progress=progress
    )
    needs_reranker = any(pc.rerank for pc in pipeline_configs.values())
    pipeline = open_pipeline(
        config.index_dir,
        reranker=config.reranker if needs_reranker else None,
        config=next(iter(pipeline_configs.values())),
        snapshot=snapshot,
        precision=config.precision,
        reranker_max_length=config.rerank_max_length,
        reranker_precision=config.rerank_precision,
    )
    try:
        runs = [
            retrieve(
                pipeline,
                name,
                pipeline.resolve(pc) if pc.rerank else pc,  # the report shows the depth and weight used
                judged,
                depth=config.depth,
                batch=config.query_batch,
                progress=progress,
            )
            for name, pc in pipeline_configs.items()
        ]
    finally:
        pipeline.close()

    config.out.mkdir(parents=True, exist_ok=True)
    for run in runs:
        write_trec_run(config.out / RUNS_DIR / f"{run.name}.trec", run)
    result = score(judged, runs, config)
    identity = describe(config, dataset, judged, snapshot, built, pipeline, command)
    identity["evaluation_seconds"] = round(time.perf_counter() - started, 3)
    result = replace(result, identity=identity, runs=runs)
    write_report(result, config.out)
    return result


def retrieve(
    pipeline: SearchPipeline,
    name: str,
    config: PipelineConfig,
    judged: JudgedQueries,
    *,
    depth: int,
    batch: int = 64,
    progress: bool = True,
) -> ConfigRun:
    """Run every judged query through ``pipeline`` with ``config``, ``batch`` queries a call."""
    ids = list(judged.queries)
    rankings: dict[str, list[tuple[str, float]]] = {}
    stage_scores: dict[str, list[dict[str, float]]] = {}
    timings: list[dict[str, float]] = []
    notes: dict[str, None] = {}
    # One untimed call first, so one-off costs (thread pools, first kernels) don't land on one config.
    pipeline.search_many([judged.queries[q] for q in ids[:WARMUP_QUERIES]], top_k=depth, config=config)
    started = time.perf_counter()
    with tqdm(total=len(ids), desc=name, unit="query", disable=not progress) as bar:
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            results: list[SearchResult] = pipeline.search_many(
                [judged.queries[q] for q in chunk], top_k=depth, config=config
            )
            for query_id, result in zip(chunk, results, strict=True):
                rankings[query_id] = [(hit.id, hit.score) for hit in result.hits]
                stage_scores[query_id] = [dict(hit.scores) for hit in result.hits]
                timings.append(dict(result.timings_ms))
                notes.update(dict.fromkeys(result.notes))
            bar.update(len(chunk))
    return ConfigRun(
        name=name,
        pipeline=config,
        rankings=rankings,
        timings_ms=timings,
        wall_seconds=round(time.perf_counter() - started, 3),
        notes=tuple(notes),
        stage_scores=stage_scores,
    )


def write_trec_run(path: Path, run: ConfigRun) -> None:
    """``qid Q0 docid rank score tag`` lines, in served order (ranks from 1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for query_id, hits in run.rankings.items():
            for rank, (doc_id, score) in enumerate(hits, start=1):
                out.write(f"{query_id} Q0 {doc_id} {rank} {score:.6f} {run.name}\n")
