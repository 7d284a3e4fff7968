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
import functools
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm.auto import tqdm

from indexer.build import build_index
from indexer.corpus import CorpusError, corpus_files, files_digest
from indexer.embedder import Embedder
from indexer.models import Precision, resolve_model, weights_fingerprint
from indexer.snapshot import IndexSnapshot
from indexer.versions import IndexDirectory, IndexNotFoundError, Manifest
from jobs.beir import BeirDataset, JudgedQueries
from jobs.eval_results import ConfigRun, EvaluationResult
from jobs.run_identity import describe
from jobs.scoring import METRICS, STAT_TESTS, score
from ranker.cross_encoder import DEFAULT_RERANK_TOP_N
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
            "%s holds no current index of %s (current version %s %s); building one, "
            "which becomes the current version",
            index_dir,
            corpus,
            previous,
            _why_not(directory, previous, corpus),
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
    digest = functools.cache(lambda: files_digest([corpus]))  # hashed once, and only if needed
    for name in dict.fromkeys(n for n in names if n):
        folder = directory.versions_dir / name
        try:
            manifest = Manifest.read(folder)
        except IndexNotFoundError:
            continue
        if fingerprint is not None and manifest.embedding.get("fingerprint") != fingerprint:
            continue
        if _indexes(manifest, corpus, digest):
            return folder
    return None


def _why_not(directory: IndexDirectory, version: str, corpus: Path) -> str:
    try:
        source = [f.resolve() for f in corpus_files(Manifest.read(directory.versions_dir / version).source)]
    except (CorpusError, IndexNotFoundError):
        return "cannot be read"
    if source == [corpus]:
        return "was built from this file before it was last modified"
    return "indexes another source"


def _indexes(manifest: Manifest, corpus: Path, digest: Callable[[], str]) -> bool:
    try:
        files = [f.resolve() for f in corpus_files(manifest.source)]
    except CorpusError:
        return False
    if files != [corpus]:
        return False
    # A corpus touched after the build (newer mtime than the watermark) is stale unless its bytes
    # are those the build read: copies and restores change the mtime, not the content.
    if corpus.stat().st_mtime <= manifest.source_watermark:
        return True
    return manifest.source_digest is not None and manifest.source_digest == digest()


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
        help="candidates the cross-encoder re-scores (default: the reranker's own, from its "
        f"metadata.json, else {DEFAULT_RERANK_TOP_N})",
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
