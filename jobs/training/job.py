"""``bertsearch train``: fine-tune the cross-encoder on Ray Train and write a servable MODEL_DIR.

The flow: training queries (judged ``split`` queries, or pseudo-queries made from the corpus) ->
hard negatives mined from the index's own hybrid candidates (``ranker.training.examples``) ->
``jobs.training.ray_fit.fit`` with DDP workers -> a checkpoint and a dev evaluation per epoch
(``jobs.training.dev``) -> the best epoch's weights in MODEL_DIR (``save_pretrained`` format)
with its ``metadata.json`` (``ranker.model_dir.ModelRecord``).

A work folder (``work_dir``, default ``MODEL_DIR.work``) holds the mined groups and Ray's
checkpoints; running the same job again after a kill resumes from the last checkpoint.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from bertsearch.indexer import atomic
from bertsearch.indexer.corpus import CorpusReader
from bertsearch.indexer.snapshot import IndexSnapshot
from bertsearch.jobs.datasets.beir import BeirDataset
from bertsearch.jobs.datasets.feedback import read_sessions
from bertsearch.jobs.evaluation.config import check_choice_split
from bertsearch.jobs.indexing.reuse import ensure_index
from bertsearch.jobs.training.dev import evaluate_dev
from bertsearch.jobs.training.distill import Distillation, prepare_student, with_teacher_scores
from bertsearch.jobs.training.groups import GROUPS_FILE, load_groups, save_groups, settings_key
from bertsearch.jobs.training.ray_fit import RayScaling, TrainOutcome, fit
from bertsearch.ranker.factory import open_pipeline
from bertsearch.ranker.pipeline import PipelineConfig
from bertsearch.ranker.training.clicks import ClickRule, judgments_from_clicks, shuffled
from bertsearch.ranker.training.examples import (
    MiningConfig,
    mine_groups,
    normalised_query,
    queries_from_qrels,
)
from bertsearch.ranker.training.loop import TrainConfig
from bertsearch.ranker.training.losses import DISTILL_LOSSES
from bertsearch.ranker.training.pseudo_queries import PseudoQueryConfig, pseudo_queries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedbackSource:
    """Training from users' clicks: the feedback ``log`` (SQLite file or Parquet export), its
    records from ``since`` on, the rule that makes clicks positives, and ``shuffle_clicks`` (a
    control: each click moved to a random shown hit, a model the promotion gate must refuse)."""

    log: Path
    since: datetime | None = None
    until: datetime | None = None  # sessions from this time on are held out (a gate can judge on them)
    rule: ClickRule = field(default_factory=ClickRule)
    shuffle_clicks: bool = False


@dataclass(frozen=True)
class TrainJob:
    """One ``bertsearch train`` run.

    Judged mode trains on the relevant documents of ``split``; label-free mode (``pseudo``
    set) makes queries from the corpus and reads no judgments for training; feedback mode
    (``feedback`` set) trains on what users clicked (``ranker.training.clicks``), over the
    index ``index_dir`` serves, and reads ``dataset`` only for its dev split (None: no dev). ``dev_split``
    (judged, disjoint from the training queries) is evaluated after every epoch with the
    ``bertsearch eval`` code, ``hybrid`` against ``hybrid+rerank`` over ``dev_depth`` candidates
    with ``dev_rerank_top_n`` reranked, and the best epoch by ``dev_metric`` is kept, with the
    rerank weight chosen on the dev split. Without a dev split, ``rerank_weight`` (if given) is
    the weight written for serving, e.g. one tuned for a label-free model of another corpus.
    """

    dataset: Path | None
    index_dir: Path
    out: Path
    split: str = "train"
    dev_split: str | None = None
    pseudo: PseudoQueryConfig | None = None
    feedback: FeedbackSource | None = None
    distillation: Distillation | None = None
    work_dir: Path | None = None
    fresh: bool = False  # clear work_dir first: start over instead of resuming
    mining: MiningConfig = field(default_factory=MiningConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    scaling: RayScaling = field(default_factory=RayScaling)
    dev_metric: str = "ndcg@10"
    dev_depth: int = 100
    dev_rerank_top_n: int = 50
    rerank_weight: float | None = None
    rerank_top_n: int | None = None
    allow_test_split: bool = False

    def __post_init__(self) -> None:
        if (self.distillation is not None) != (self.train.loss in DISTILL_LOSSES):
            raise ValueError("distillation trains with a distillation loss (margin-mse or distill-kl), "
                             "and those losses need a teacher")  # fmt: skip
        if self.feedback is not None and self.pseudo is not None:
            raise ValueError("--from-feedback and --pseudo-queries are two sources of training queries")
        if self.dataset is None and (self.feedback is None or self.dev_split is not None):
            raise ValueError("give the DATASET folder (read without --from-feedback, or for a --dev-split)")
        if self.dev_split is not None:
            check_choice_split(self.dev_split, self.allow_test_split, what="--dev-split")
        if self.pseudo is not None and self.mining.passage != self.pseudo.passage_view:
            raise ValueError(
                f"--pseudo-queries {self.pseudo.method} needs negatives shown as "
                f"{self.pseudo.passage_view!r} passages, like its positives, not {self.mining.passage!r}"
            )
        judged = self.pseudo is None and self.feedback is None
        if self.dev_split is not None and judged and self.dev_split == self.split:
            raise ValueError(f"the dev split must differ from the training split ({self.split!r})")
        if self.rerank_weight is not None:
            if self.dev_split is not None:
                raise ValueError("--rerank-weight is for runs without a dev split; a dev split chooses it")
            if not 0.0 <= self.rerank_weight <= 1.0:
                raise ValueError(f"--rerank-weight must be between 0 and 1, got {self.rerank_weight}")
        if self.rerank_top_n is not None:
            if self.dev_split is not None:
                raise ValueError(
                    "--rerank-top-n is for runs without a dev split; with one, "
                    "--dev-rerank-top-n is the depth the dev split tunes the weight at"
                )
            if self.rerank_top_n < 1:
                raise ValueError(f"--rerank-top-n must be at least 1, got {self.rerank_top_n}")
        if not 1 <= self.dev_rerank_top_n <= self.dev_depth:
            raise ValueError(f"dev_rerank_top_n must be between 1 and dev_depth ({self.dev_depth})")
        if self.dev_metric not in ("ndcg@10", "mrr@10", "recall@100", "map@100"):
            raise ValueError(
                f"dev_metric must be one of ndcg@10, mrr@10, recall@100, map@100, not {self.dev_metric!r}"
            )

    @property
    def resolved_work_dir(self) -> Path:
        return self.work_dir if self.work_dir is not None else self.out.with_name(self.out.name + ".work")


def training_queries(job: TrainJob, dataset) -> tuple[list, dict[str, Any]]:
    """The job's training queries and a description of where they came from (for metadata)."""
    if job.feedback is not None:
        queries, source = _click_queries(job.feedback)
        if job.dev_split is not None:  # users may have asked the dev queries: those would leak
            dev = {normalised_query(t) for t in dataset.load(job.dev_split).queries.values()}
            kept = [q for q in queries if normalised_query(q.text) not in dev]
            source["dropped_dev_queries"] = len(queries) - len(kept)
            queries = kept
        return queries, source
    if job.pseudo is not None:
        reader = CorpusReader(dataset.corpus_path)
        queries = pseudo_queries(reader, job.pseudo)
        return queries, {
            "mode": "pseudo-queries",
            "pseudo_queries": asdict(job.pseudo),
            "corpus": str(dataset.corpus_path),
            "corpus_rejects": len(reader.rejects),
        }
    judged = dataset.load(job.split)
    if job.dev_split is not None:
        overlap = set(judged.queries) & set(dataset.load(job.dev_split).queries)
        if overlap:
            raise ValueError(
                f"{len(overlap)} queries are in both {job.split!r} and {job.dev_split!r} (e.g. "
                f"{sorted(overlap)[:3]}); carve a disjoint dev split with `bertsearch split`"
            )
    queries = queries_from_qrels(judged.queries, judged.qrels)
    return queries, {
        "mode": "judgments",
        "split": job.split,
        "queries": len(queries),
        "qrels": str(dataset.qrels_path(job.split)),
    }


def _click_queries(source: FeedbackSource) -> tuple[list, dict[str, Any]]:
    sessions = read_sessions(source.log, source.since, source.until)
    if source.shuffle_clicks:
        sessions = shuffled(sessions)
    judged = judgments_from_clicks(sessions, source.rule)
    log.info("feedback %s: %s", source.log, judged.summary())
    if not judged.queries:
        raise ValueError(
            f"{source.log}: no logged session has a click that makes a positive "
            f"({judged.summary()}); collect more clicks with POST /events, or lower --min-clicks"
        )
    return judged.queries, {
        "mode": "feedback", "log": str(source.log), "click_rule": source.rule.to_dict(),
        "since": source.since.isoformat() if source.since else None,
        "until": source.until.isoformat() if source.until else None,
        "shuffled_clicks": source.shuffle_clicks, **judged.summary(),
    }  # fmt: skip


def run(job: TrainJob, *, progress: bool = True) -> TrainOutcome:
    """Mine (or reuse) the training groups, train on Ray, write the best epoch to ``job.out``."""
    started = time.perf_counter()
    dataset = BeirDataset(job.dataset) if job.dataset is not None else None
    work_dir = job.resolved_work_dir
    if job.fresh and work_dir.exists():
        log.info("--fresh: clearing %s (an earlier run's groups and checkpoints)", work_dir)
        shutil.rmtree(work_dir)
    if job.feedback is not None:  # the clicks were on what the index serves: mine from it as it is
        snapshot = IndexSnapshot.open(job.index_dir)
    else:
        snapshot, _ = ensure_index(dataset, job.index_dir, progress=progress)
    queries, source = training_queries(job, dataset)
    train_config, distilled = job.train, {}
    if job.distillation is not None:
        student, kept = prepare_student(job.distillation, work_dir)
        train_config = replace(train_config, base_model=student or train_config.base_model)
        distilled = {**job.distillation.describe(), "layers_kept": kept}
        source = {**source, "distillation": distilled}
    data_info = {
        "dataset": str(dataset.root.resolve()) if dataset is not None else None,
        "index_version": snapshot.manifest.version,
        "source": source,
        "mining": job.mining.describe(),
        "training_query_ids": settings_key({"ids": [q.id for q in queries]}),
    }
    groups, mining_seconds = mined_groups(job, snapshot, queries, data_info, work_dir)
    if job.dev_split is not None:
        dataset.load(job.dev_split)  # fail now, not after the first epoch, if the split is missing
    serving = (
        {"rerank_top_n": job.dev_rerank_top_n}  # the depth the dev split tunes the weight at
        if job.dev_split is not None
        else {"rerank_weight": job.rerank_weight, "rerank_top_n": job.rerank_top_n}
    )
    return fit(
        groups,
        train_config,
        job.scaling,
        out=job.out,
        work_dir=work_dir,
        dev_eval=_dev_evaluation(job, dataset, work_dir),
        dev_metric=job.dev_metric,
        serving=serving,
        provenance={
            "data": {
                **data_info,
                "corpora": [snapshot.manifest.corpus()],  # how serving tells its own corpus from others
                "dev_split": job.dev_split,
                "groups_file": str(work_dir / GROUPS_FILE),
            },
            "mining_seconds": round(mining_seconds, 1),
            "preparation_seconds": round(time.perf_counter() - started, 1),  # index check + mining
            **({"chosen_on_test_split": True} if job.allow_test_split and job.dev_split else {}),
        },
    )


def mined_groups(job: TrainJob, snapshot, queries, data_info: dict[str, Any], work_dir: Path):
    """The groups saved in ``work_dir`` for these data settings, or newly mined ones (saved)."""
    groups = load_groups(work_dir, data_info)
    if groups is not None:
        return groups, 0.0
    started = time.perf_counter()
    pipeline = open_pipeline(
        job.index_dir,
        snapshot=snapshot,
        config=PipelineConfig(rerank=False),  # the candidates `bertsearch eval`/serving rerank
    )
    try:
        report = mine_groups(pipeline, queries, job.mining)
    finally:
        pipeline.close()
    if job.distillation is not None:  # scored once and kept with the groups: a resumed run reuses them
        report.groups, _ = with_teacher_scores(report.groups, job.distillation.teacher, job.train.max_length)
    seconds = time.perf_counter() - started
    log.info(
        "mined %d groups from %d queries in %.1f s (%d skipped, %d padded, %d positives not retrieved)",
        len(report.groups),
        report.queries,
        seconds,
        len(report.skipped),
        report.padded_groups,
        report.positives_not_retrieved,
    )
    save_groups(work_dir, report.groups, data_info)
    atomic.write_json(
        work_dir / "mining.json",
        {
            "queries": report.queries,
            "groups": len(report.groups),
            "skipped": report.skipped,
            "padded_groups": report.padded_groups,
            "positives_not_retrieved": report.positives_not_retrieved,
            "seconds": round(seconds, 1),
        },
    )
    return report.groups, seconds


def _dev_evaluation(job: TrainJob, dataset: BeirDataset, work_dir: Path):
    """The per-epoch dev evaluation Ray's rank 0 runs (picklable), or None without a dev split."""
    if job.dev_split is None:
        return None
    return partial(
        evaluate_dev,
        dataset=dataset.root.resolve(),
        split=job.dev_split,
        index_dir=job.index_dir.resolve(),
        reports=work_dir.resolve() / "dev",
        depth=job.dev_depth,
        rerank_top_n=job.dev_rerank_top_n,
        threads=os.cpu_count() or 1,
        metric=job.dev_metric,
    )
