"""Offline relevance evaluation: run named pipeline configurations over a BEIR split and score them.

``run_evaluation(EvalConfig(...))`` is the job: it finds (or builds) an index of the dataset's
corpus, opens the very ``SearchPipeline`` that serves ``POST /search``, runs every judged query
of the split through each configuration with ``search_many``, writes a TREC run file per
configuration, scores the runs with ranx, compares each configuration with the first one
(ranx's paired significance tests, per-query wins/ties/losses, most helped and hurt queries,
query-length slices), and writes the report (see jobs.report).

Metrics come from ranx, never from hand-written formulas. ranx is fed the served order: each
hit's ranx score is derived from its rank, so score ties are evaluated in the order the pipeline
returned them (the TREC files keep the pipeline's own scores).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from indexer.build import build_index
from indexer.corpus import CorpusError, corpus_files
from indexer.embedder import Embedder
from indexer.models import Precision, resolve_model, weights_fingerprint
from indexer.snapshot import IndexSnapshot
from indexer.versions import IndexDirectory, IndexNotFoundError, Manifest
from jobs.beir import BeirDataset, JudgedQueries
from ranker.pipeline import PipelineConfig, SearchPipeline, SearchResult

log = logging.getLogger(__name__)

# Which stages each configuration name turns on; depth and rerank settings come from EvalConfig.
CONFIGS: dict[str, dict[str, bool]] = {
    "bm25": {"lexical": True, "dense": False, "rerank": False},
    "dense": {"lexical": False, "dense": True, "rerank": False},
    "hybrid": {"lexical": True, "dense": True, "rerank": False},
    "bm25+rerank": {"lexical": True, "dense": False, "rerank": True},
    "dense+rerank": {"lexical": False, "dense": True, "rerank": True},
    "hybrid+rerank": {"lexical": True, "dense": True, "rerank": True},
}
METRICS = ("ndcg@10", "mrr@10", "recall@100", "map@100")
RECALL_CUTOFFS = (1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 500, 1000)
STAT_TESTS = ("student", "fisher")
LENGTH_BUCKETS = ("short", "medium", "long")
BOOTSTRAP_SAMPLES = 1000
RUNS_DIR = "runs"
WARMUP_QUERIES = 4


def known_configs() -> str:
    return ", ".join(CONFIGS)


def parse_configs(text: str) -> tuple[str, ...]:
    """``"bm25,dense"`` -> ``("bm25", "dense")``; raises ValueError naming the known ones."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise ValueError(f"no configuration given; known configurations: {known_configs()}")
    return names


def pipeline_config(
    name: str, depth: int, rerank_top_n: int | None = None, rerank_weight: float | None = None
) -> PipelineConfig:
    """The PipelineConfig a configuration name stands for, retrieving ``depth`` candidates a retriever."""
    if name not in CONFIGS:
        raise ValueError(f"unknown configuration {name!r}; known configurations: {known_configs()}")
    stages = CONFIGS[name]
    config = PipelineConfig(**stages, lexical_k=depth, dense_k=depth)
    if stages["rerank"]:
        config = config.with_overrides(rerank_top_n=rerank_top_n, rerank_weight=rerank_weight)
    return config


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation: which dataset split, which index, which configurations, where to write.

    The first configuration is the baseline every other one is compared with. ``depth``
    candidates come from each retriever and ``depth`` hits are scored per query (Recall@100
    needs a depth of at least 100). ``+rerank`` configurations need ``reranker``, a trained
    cross-encoder folder; ``rerank_weight`` overrides the weight its metadata gives its score
    against the retrieval score (None: the model's own). ``precision`` is the encoder's (an
    index built here uses it too).
    ``model``: the encoder to build a missing index with (None: the packaged MiniLM); when given,
    only an index embedded with these weights is reused.
    """

    dataset: Path
    index_dir: Path
    out: Path
    split: str = "test"
    configs: tuple[str, ...] = ("bm25", "dense", "hybrid")
    reranker: Path | None = None
    depth: int = 100
    rerank_top_n: int | None = None
    rerank_weight: float | None = None
    stat_test: str = "student"
    max_p: float = 0.05
    precision: Precision = "auto"
    model: str | Path | None = None
    query_batch: int = 64
    per_query_metric: str = "ndcg@10"
    top_queries: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.configs:
            raise ValueError(f"give at least one configuration; known configurations: {known_configs()}")
        unknown = [name for name in self.configs if name not in CONFIGS]
        if unknown:
            raise ValueError(
                f"unknown configuration{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"known configurations: {known_configs()}"
            )
        if len(set(self.configs)) != len(self.configs):
            raise ValueError(f"configurations repeat: {', '.join(self.configs)}; name each once")
        rerankers = [name for name in self.configs if CONFIGS[name]["rerank"]]
        if rerankers and self.reranker is None:
            raise ValueError(
                f"{', '.join(rerankers)} rerank with a trained cross-encoder: pass --reranker MODEL_DIR "
                "(train one with `bertsearch train`), or drop the +rerank configurations"
            )
        if not 1 <= self.depth <= 1000:
            raise ValueError(f"depth must be between 1 and 1000, got {self.depth}")
        if self.rerank_top_n is not None and not 1 <= self.rerank_top_n <= self.depth:
            raise ValueError(
                f"rerank_top_n must be between 1 and the depth ({self.depth}), got {self.rerank_top_n}"
            )
        if self.stat_test not in STAT_TESTS:
            raise ValueError(f"stat_test must be one of {', '.join(STAT_TESTS)}, not {self.stat_test!r}")
        if not 0.0 < self.max_p < 1.0:
            raise ValueError(f"max_p must be between 0 and 1, got {self.max_p}")
        if self.query_batch < 1:
            raise ValueError(f"query_batch must be at least 1, got {self.query_batch}")
        if self.per_query_metric not in METRICS:
            raise ValueError(
                f"per_query_metric must be one of {', '.join(METRICS)}, not {self.per_query_metric!r}"
            )
        if self.top_queries < 0:
            raise ValueError(f"top_queries must be non-negative, got {self.top_queries}")

    def pipeline_configs(self) -> dict[str, PipelineConfig]:
        return {
            name: pipeline_config(name, self.depth, self.rerank_top_n, self.rerank_weight)
            for name in self.configs
        }


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


# -- the job ------------------------------------------------------------------------------------


def run_evaluation(
    config: EvalConfig, *, progress: bool = True, command: str | None = None
) -> EvaluationResult:
    """Evaluate every configuration of ``config`` and write the report, run files and plots.

    Raises DatasetError (the split or a file is missing), ValueError (a bad configuration),
    UntrainedRerankerError (the reranker has no trained head).
    """
    from jobs.report import write_report
    from ranker.factory import open_pipeline

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
    )
    try:
        runs = [
            retrieve(
                pipeline, name, pc, judged, depth=config.depth, batch=config.query_batch, progress=progress
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


def ensure_index(
    dataset: BeirDataset,
    index_dir: Path,
    *,
    model: str | Path | None = None,
    precision: Precision = "auto",
    progress: bool = True,
) -> tuple[IndexSnapshot, bool]:
    """An index version of the dataset's corpus in ``index_dir``, built there first if it has none.

    The current version is used when it indexes this corpus (same file, not modified since);
    otherwise the newest such older version; otherwise a new version is built with ``model``
    (None: the packaged encoder) and becomes current. A ``model`` given explicitly must also be
    the one a reused version was embedded with. Returns the snapshot and whether it was built now.
    """
    corpus = dataset.corpus_path.resolve()
    fingerprint = weights_fingerprint(resolve_model(model)) if model is not None else None
    folder = find_version(IndexDirectory(index_dir), corpus, fingerprint=fingerprint)
    if folder is not None:
        return IndexSnapshot.open_version(folder), False
    directory = IndexDirectory(index_dir)
    previous = directory.current_name()
    if previous is not None:
        log.warning(
            "%s holds no index of %s (current version %s indexes another source); building one, "
            "which becomes the current version",
            index_dir,
            corpus,
            previous,
        )
    else:
        log.info("no index of %s in %s: building one", corpus, index_dir)
    embedder = Embedder(model, precision=precision).load()
    report = build_index(dataset.root, index_dir, embedder, progress=progress)
    if report.rejects:
        log.warning(
            "%d corpus lines were not indexed (see %s/rejects.jsonl)", len(report.rejects), report.path
        )
    return IndexSnapshot.open_version(report.path), True


def find_version(directory: IndexDirectory, corpus: Path, *, fingerprint: str | None = None) -> Path | None:
    """The current version if it indexes ``corpus`` as it is now, else the newest such version.

    With ``fingerprint``, only versions embedded with those weights count.
    """
    names = [directory.current_name(), *reversed(directory.versions())]
    for name in dict.fromkeys(n for n in names if n):
        folder = directory.versions_dir / name
        try:
            manifest = Manifest.read(folder)
        except IndexNotFoundError:
            continue
        if fingerprint is not None and manifest.embedding.get("fingerprint") != fingerprint:
            continue
        if _indexes(manifest, corpus):
            return folder
    return None


def _indexes(manifest: Manifest, corpus: Path) -> bool:
    try:
        files = [f.resolve() for f in corpus_files(manifest.source)]
    except CorpusError:
        return False
    # A corpus modified after the build (newer mtime than the watermark) makes the index stale.
    return files == [corpus] and corpus.stat().st_mtime <= manifest.source_watermark


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


# -- identity -----------------------------------------------------------------------------------


def describe(
    config: EvalConfig,
    dataset: BeirDataset,
    judged: JudgedQueries,
    snapshot: IndexSnapshot,
    built: bool,
    pipeline: SearchPipeline,
    command: str | None,
) -> dict:
    """What was evaluated, on what, with which models and software: enough to reproduce it."""
    reranker = None
    if pipeline.reranker is not None:
        path = resolve_model(config.reranker)
        reranker = {
            "path": str(Path(path).resolve()),
            "fingerprint": weights_fingerprint(path),
            "max_length": pipeline.reranker.max_length,
            "model_rerank_weight": pipeline.reranker.rerank_weight,
        }
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "dataset": {
            "name": dataset.name,
            "path": str(dataset.root.resolve()),
            "corpus": str(dataset.corpus_path.resolve()),
            "split": config.split,
            "qrels": str(dataset.qrels_path(config.split).resolve()),
            "qrels_sha256": _sha256(dataset.qrels_path(config.split)),
            "queries": len(judged),
            "skipped_queries": list(judged.skipped),
            "judgments": sum(len(d) for d in judged.qrels.values()),
        },
        "configs": {name: asdict(pc) for name, pc in config.pipeline_configs().items()},
        "depth": config.depth,
        "index": {
            "path": str(snapshot.path.resolve()),
            "built_by_this_run": built,
            "manifest": asdict(snapshot.manifest),
        },
        "encoder": {
            "model": pipeline.encoder.model_name,
            "fingerprint": pipeline.encoder.fingerprint(),
            "max_length": pipeline.encoder.max_length,
            "precision": config.precision,
            "bf16": pipeline.encoder.bf16,
        },
        "reranker": reranker,
        "stat_test": config.stat_test,
        "max_p": config.max_p,
        "bootstrap": {"samples": BOOTSTRAP_SAMPLES, "seed": config.seed},
        "machine": machine(),
        "software": software(),
    }


def machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def software() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("bertsearch", "ranx", "torch", "transformers", "faiss-cpu", "tantivy", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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


# -- command line -------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate pipeline configurations on a BEIR dataset split",
        description="Run every judged query of a split through each configuration and write "
        "report.md, report.json, TREC run files and plots to --out.",
    )
    p.add_argument(
        "dataset", type=Path, help="BEIR folder (corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv)"
    )
    p.add_argument("--split", default="test", help="qrels split to evaluate (default: test)")
    p.add_argument(
        "--index-dir",
        type=Path,
        required=True,
        help="index directory; an index of the dataset's corpus is built there if it has none",
    )
    p.add_argument(
        "--configs",
        default="bm25,dense,hybrid",
        help=f"comma-separated configurations, the first is the baseline (known: {known_configs()})",
    )
    p.add_argument("--reranker", type=Path, default=None, help="trained cross-encoder folder (for +rerank)")
    p.add_argument(
        "--depth", type=int, default=100, help="candidates per retriever and hits scored (default 100)"
    )
    p.add_argument(
        "--rerank-top-n",
        type=int,
        default=None,
        help=f"candidates the cross-encoder re-scores (default {PipelineConfig().rerank_top_n})",
    )
    p.add_argument(
        "--rerank-weight",
        type=float,
        default=None,
        help="weight of the reranker's score against the retrieval score, 0-1 (default: the one "
        "in the model's metadata.json, tuned on its dev split; 1 without one)",
    )
    p.add_argument(
        "--stat-test",
        choices=STAT_TESTS,
        default="student",
        help="ranx paired test: student (t-test) or fisher (randomisation)",
    )
    p.add_argument("--max-p", type=float, default=0.05, help="p-value below which a difference is marked")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="encoder precision (auto: bf16 where the CPU/GPU runs it natively)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="encoder to build a missing index with (default: the packaged all-MiniLM-L6-v2)",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the report, run files and plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=command)


def command(args: argparse.Namespace) -> int:
    from jobs.commands import USER_ERRORS, UserError

    try:
        config = EvalConfig(
            dataset=args.dataset,
            index_dir=args.index_dir,
            out=args.out,
            split=args.split,
            configs=parse_configs(args.configs),
            reranker=args.reranker,
            depth=args.depth,
            rerank_top_n=args.rerank_top_n,
            rerank_weight=args.rerank_weight,
            stat_test=args.stat_test,
            max_p=args.max_p,
            precision=args.precision,
            model=args.model,
        )
        result = run_evaluation(
            config, progress=not args.no_progress, command=" ".join(["bertsearch", *sys.argv[1:]])
        )
    except USER_ERRORS as err:
        raise UserError(str(err)) from err
    print(summary(result))
    print(f"report: {config.out / 'report.md'}")
    return 0


def summary(result: EvaluationResult) -> str:
    """A plain-text table of the mean metrics and wall time of each configuration."""
    header = f"{'config':<16}" + "".join(f"{m:>12}" for m in result.metrics) + f"{'wall s':>10}"
    lines = [header]
    for scores in result.configs:
        lines.append(
            f"{scores.name:<16}"
            + "".join(f"{scores.means[m]:>12.4f}" for m in result.metrics)
            + f"{scores.wall_seconds:>10.1f}"
        )
    return "\n".join(lines)
