"""``bertsearch train`` and ``average-epochs``: fine-tune the cross-encoder on Ray Train.

``--mine-depth`` is the number of fused candidates hard negatives are drawn from; ``--dev-depth``
and ``--dev-rerank-top-n`` mean for the dev evaluation what ``--depth`` and ``--rerank-top-n``
mean for ``bertsearch eval``.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bertsearch.jobs.cli.types import DeprecatedAlias, one_sided_confidence, positive_ints, utc_time
from bertsearch.ranker.training.clicks import EXAMINED_BY
from bertsearch.ranker.training.pseudo_queries import METHODS as PSEUDO_METHODS


def register(sub: argparse._SubParsersAction) -> None:
    _add_train(sub)
    _add_distill(sub)
    _add_average(sub)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune the cross-encoder reranker on Ray Train",
        description="Mine hard negatives from the index's hybrid candidates, fine-tune the cross-encoder "
        "with Ray Train workers, evaluate a dev split each epoch and write the best epoch to --out.",
    )
    _training_arguments(p)
    p.set_defaults(run=train)


def _add_distill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill",
        help="train a smaller reranker to match a teacher's scores (K of its layers), on Ray Train",
        description="Mine training groups as `train` does (judged queries, or --pseudo-queries: no "
        "judgments needed), score them with the teacher, and train a student made of --layers of "
        "the teacher's layers on the teacher's margins (Margin-MSE) or listwise distribution (KL).",
    )
    p.add_argument("teacher", type=Path, help="the teacher: a trained reranker folder")
    _training_arguments(p)
    p.add_argument("--layers", type=int, default=None,
                   help="teacher layers the student keeps, evenly spaced (default: --base-model as it is)")
    p.set_defaults(run=train, loss="margin-mse")


# Long: one add_argument per flag, in the order --help prints them.
def _training_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", type=Path, nargs="?", default=None,
                   help="BEIR folder (corpus, queries.jsonl, qrels/<split>.tsv); with --from-feedback, "
                   "only for --dev-split")
    p.add_argument("--split", default="train", help="judged split to train on (default: train)")
    p.add_argument("--dev-split", default=None,
                   help="judged split evaluated each epoch to pick the best (carve one: `bertsearch split`)")
    p.add_argument("--pseudo-queries", choices=PSEUDO_METHODS, default=None,
                   help="label-free: make queries from the corpus (title: title as query; crop: a sentence "
                   "cut out of the passage) instead of reading --split")
    p.add_argument("--from-feedback", type=Path, default=None, metavar="LOG",
                   help="train on users' clicks: the service's feedback log (INDEX_DIR/feedback.sqlite3) "
                   "or a `feedback-export` folder; the index is --index-dir as it is served")
    p.add_argument("--feedback-since", type=utc_time, default=None,
                   help="with --from-feedback: only sessions from this time on (ISO 8601)")
    p.add_argument("--feedback-days", type=float, default=None,
                   help="with --from-feedback: only the sessions of the last N days (a nightly job's window)")
    p.add_argument("--holdout-days", type=float, default=None,
                   help="with --from-feedback: leave out the sessions of the last N days (the gate's "
                   "`--feedback-days N` judges the candidate on them)")
    p.add_argument("--min-clicks", type=int, default=2,
                   help="with --from-feedback: clicks a document needs to be a positive (default 2)")
    p.add_argument("--min-click-rate", type=float, default=0.5,
                   help="with --from-feedback: clicks per examination (sessions where it sat at or above "
                   "the last click) a positive needs (default 0.5)")
    p.add_argument("--click-confidence", type=one_sided_confidence, default=None, metavar="C",
                   help="with --from-feedback: a positive needs the Wilson lower bound of its click rate, "
                   "at one-sided confidence C (e.g. 0.95), to reach --min-click-rate: a rule that tightens "
                   "with the traffic instead of a fixed --min-clicks, which still applies as a floor "
                   "(docs/feedback.md §10)")
    p.add_argument("--examined-by", choices=EXAMINED_BY, default="last-click",
                   help="with --from-feedback: what counts as examined, the hits at or above a session's "
                   "last click (default), or those and the hits the client reported seen in `impression` "
                   "events (send those only for hits a user scrolled to; docs/feedback.md §11)")
    p.add_argument("--shuffle-clicks", action="store_true",
                   help="with --from-feedback: move each click to a random shown hit (a control run whose "
                   "model the promotion gate must refuse)")
    p.add_argument("--mix", type=Path, default=None, metavar="FILE",
                   help="train on several judged collections: a YAML/JSON mix file (collections with "
                   "dataset, split, dev_split, weight, index_dir; temperature); see docs/generalisation.md")
    p.add_argument("--datasets", default=None, metavar="PATH[:SPLIT[:DEV]],...",
                   help="several judged collections at once (each indexed under --index-dir/<name>)")
    p.add_argument("--temperature", type=float, default=None,
                   help="with --mix/--datasets: sampling temperature, share ∝ (weight·groups)^(1/T); "
                   "1 keeps sizes, larger evens them out (default 2, or the mix file's)")
    p.add_argument("--epoch-groups", type=int, default=None,
                   help="with --mix/--datasets: training groups per epoch, sampled by temperature "
                   "(default: as many as all collections have)")
    p.add_argument("--pseudo-limit", type=int, default=None, help="at most this many pseudo-queries (seeded)")
    p.add_argument("--index-dir", type=Path, required=True,
                   help="index of the dataset's corpus (built there when missing); negatives come from it. "
                   "With --mix/--datasets: the folder of one index per collection (<name>)")
    p.add_argument("--out", type=Path, required=True, help="MODEL_DIR to write (replaced when it exists)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="mined groups and Ray checkpoints (default: MODEL_DIR.work); rerun to resume")
    p.add_argument("--fresh", action="store_true",
                   help="clear the work folder first: start over instead of resuming an earlier run")
    model_arguments(p)
    g = p.add_argument_group("dev evaluation")
    g.add_argument("--dev-metric", default="ndcg@10")
    g.add_argument("--dev-depth", type=int, default=100)
    g.add_argument("--dev-rerank-top-n", type=int, default=50)
    g.add_argument("--allow-test-split", action="store_true",
                   help="let a --dev-split named test choose the epoch and weight (recorded in MODEL_DIR)")
    g.add_argument("--rerank-weight", type=float, default=None,
                   help="without --dev-split: the weight of the reranker's score against the fused score "
                   "that serving uses (0-1; default 1, the reranker alone). With one, dev chooses it")
    g.add_argument("--rerank-top-n", type=int, default=None,
                   help="without --dev-split: the fused candidates serving reranks (default 50). "
                   "With one, --dev-rerank-top-n is that depth")


# Long: one add_argument per flag, in the order --help prints them.
def model_arguments(p: argparse.ArgumentParser) -> None:
    """The mining, training and Ray flags of `train`, `distill` and `loco` (see model_settings)."""
    g = p.add_argument_group("hard negatives")
    g.add_argument("--mine-depth", type=int, default=50, help="fused candidates mined per query (default 50)")
    g.add_argument("--depth", dest="mine_depth", type=int, action=DeprecatedAlias, new="--mine-depth",
                   help=argparse.SUPPRESS)
    g.add_argument("--negatives", type=int, default=7, help="negatives per positive (default 7)")
    g.add_argument("--sampling", choices=("random", "top"), default="random")
    g.add_argument("--skip-top", type=int, default=0, help="ignore the first K candidates when sampling")
    g.add_argument("--positives", choices=("all", "retrieved"), default="all",
                   help="train on all judged-relevant documents (default), or only on those among the "
                   "--mine-depth candidates: the ones a served rerank at that depth can see")
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
    g.add_argument("--loss", choices=("listwise", "bce", "margin-mse", "distill-kl"), default="listwise",
                   help="listwise or bce (train), margin-mse or distill-kl (distill)")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    g.add_argument("--seed", type=int, default=13)
    g.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap each epoch (smoke runs)")
    g.add_argument("--checkpoint-minutes", type=float, default=15.0,
                   help="also checkpoint within an epoch this often, so that a rerun of a long epoch "
                   "cut short goes on from there (default 15; 0: at epoch ends only)")
    ray_arguments(p)


def ray_arguments(p: argparse.ArgumentParser) -> None:
    """The Ray Train flags of every training command (read back by ray_scaling)."""
    g = p.add_argument_group("Ray")
    g.add_argument("--workers", type=int, default=1, help="Ray Train workers (DDP processes)")
    g.add_argument("--use-gpu", action="store_true", help="one GPU per worker, NCCL")
    g.add_argument("--cpus-per-worker", type=float, default=None,
                   help="CPUs Ray reserves per worker (default: all CPUs shared among the workers)")
    g.add_argument("--max-failures", type=int, default=0, help="worker failures Ray recovers from in-run")


def ray_scaling(args: argparse.Namespace):
    """The RayScaling of ray_arguments' flags."""
    from bertsearch.jobs.training.ray_fit import RayScaling

    cpus = args.cpus_per_worker
    if cpus is None:
        cpus = 1.0 if os.environ.get("RAY_ADDRESS") else (os.cpu_count() or 1) / max(1, args.workers)
    return RayScaling(workers=args.workers, use_gpu=args.use_gpu, cpus_per_worker=cpus,
                      max_failures=args.max_failures)


def _add_average(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "average-epochs",
        help="a reranker with the mean weights of several epochs of one training run",
        description="Average the checkpoints of the given epochs of the run that wrote MODEL_DIR "
        "and write the result to OUT (metadata kept, operating point dropped: tune it on dev "
        "with `tune-rerank-weight`).",
    )
    p.add_argument("model_dir", type=Path, help="MODEL_DIR from `bertsearch train`")
    p.add_argument(
        "--epochs", type=positive_ints("epochs", "2,3"), required=True, help="epochs to average, e.g. 2,3"
    )
    p.add_argument("--out", type=Path, required=True, help="folder to write (replaced when it exists)")
    p.add_argument(
        "--work-dir", type=Path, default=None, help="the run's --work-dir (default MODEL_DIR.work)"
    )
    p.set_defaults(run=average)


def train(args: argparse.Namespace) -> int:
    from bertsearch.jobs.training.job import run
    from bertsearch.jobs.training.mixture import run_mixture

    mixture = _mixture_job(args)
    outcome = run_mixture(mixture) if mixture is not None else run(_train_job(args))
    for epoch in outcome.history:
        shown = {k: v for k, v in epoch.items() if k in ("train_loss", "pairs_per_s", "train_seconds")
                 or k.startswith("dev_")}
        print(f"epoch {epoch['epoch']}: " + " ".join(f"{k}={v:.4g}" for k, v in shown.items()))
    print(f"best epoch {outcome.best_epoch} -> {outcome.model_dir} ({outcome.seconds:.0f} s)")
    return 0


def _mixture_job(args: argparse.Namespace):
    """The --mix/--datasets run (None without either)."""
    from bertsearch.jobs.training.mixture import DEFAULT_TEMPERATURE, MixtureJob, parse_datasets, read_mix

    if args.mix is None and args.datasets is None:
        if args.temperature is not None or args.epoch_groups is not None:
            raise ValueError("--temperature and --epoch-groups need --mix or --datasets")
        return None
    given = {"DATASET": args.dataset is not None, "--mix with --datasets": args.mix and args.datasets,
             "--pseudo-queries": args.pseudo_queries, "--from-feedback": args.from_feedback is not None,
             "distill": getattr(args, "teacher", None) is not None, "--dev-split": args.dev_split,
             "--rerank-weight": args.rerank_weight is not None,
             "--rerank-top-n": args.rerank_top_n is not None}
    clashes = [flag for flag, present in given.items() if present]
    if clashes:
        raise ValueError(f"--mix/--datasets name the training data themselves; drop {', '.join(clashes)} "
                         "(a collection's dev split goes in the mix: PATH:SPLIT:DEV, or dev_split)")
    temperature = args.temperature
    if args.mix is not None:
        collections, from_file = read_mix(args.mix, args.index_dir)
        temperature = temperature if temperature is not None else from_file
    else:
        collections = parse_datasets(args.datasets, args.index_dir, args.split)
    mining, train, scaling = model_settings(args, passage="body")
    return MixtureJob(
        collections=tuple(collections), out=args.out,
        temperature=DEFAULT_TEMPERATURE if temperature is None else temperature,
        epoch_groups=args.epoch_groups,
        work_dir=args.work_dir, fresh=args.fresh, mining=mining, train=train, scaling=scaling,
        dev_metric=args.dev_metric, dev_depth=args.dev_depth, dev_rerank_top_n=args.dev_rerank_top_n,
    )


def _train_job(args: argparse.Namespace):
    from bertsearch.jobs.training.distill import Distillation
    from bertsearch.jobs.training.job import TrainJob
    from bertsearch.ranker.training.pseudo_queries import PseudoQueryConfig

    pseudo = (
        PseudoQueryConfig(args.pseudo_queries, limit=args.pseudo_limit, seed=args.seed)
        if args.pseudo_queries
        else None
    )
    feedback = _feedback_source(args)
    mining, train, scaling = model_settings(args, passage=pseudo.passage_view if pseudo else "body")
    return TrainJob(
        dataset=args.dataset,
        index_dir=args.index_dir,
        out=args.out,
        split=args.split,
        dev_split=args.dev_split,
        pseudo=pseudo,
        feedback=feedback,
        distillation=Distillation(args.teacher, args.layers) if getattr(args, "teacher", None) else None,
        work_dir=args.work_dir,
        fresh=args.fresh,
        mining=mining,
        train=train,
        scaling=scaling,
        dev_metric=args.dev_metric,
        dev_depth=args.dev_depth,
        dev_rerank_top_n=args.dev_rerank_top_n,
        rerank_weight=args.rerank_weight,
        rerank_top_n=args.rerank_top_n,
        allow_test_split=args.allow_test_split,
    )


def model_settings(args: argparse.Namespace, *, passage: str):
    """Mining, training and Ray settings from the flags `train`, `distill` and `loco` share."""
    from bertsearch.ranker.training.examples import MiningConfig
    from bertsearch.ranker.training.loop import TrainConfig

    mining = MiningConfig(depth=args.mine_depth, negatives=args.negatives, sampling=args.sampling,
                          skip_top=args.skip_top, seed=args.seed, passage=passage,
                          positives=args.positives)
    train = TrainConfig(
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
        checkpoint_minutes=args.checkpoint_minutes,
    )
    return mining, train, ray_scaling(args)


def _feedback_source(args: argparse.Namespace):
    """The --from-feedback flags as a FeedbackSource (None without --from-feedback)."""
    from bertsearch.jobs.training.job import FeedbackSource
    from bertsearch.ranker.training.clicks import ClickRule

    since = args.feedback_since
    if args.feedback_days is not None:
        if since is not None or args.feedback_days <= 0:
            raise ValueError("give --feedback-days as a positive number of days, not with --feedback-since")
        since = datetime.now(UTC) - timedelta(days=args.feedback_days)
    until = None
    if args.holdout_days is not None:
        if args.holdout_days <= 0:
            raise ValueError("give --holdout-days as a positive number of days")
        until = datetime.now(UTC) - timedelta(days=args.holdout_days)
        since = since if args.feedback_days is None else until - timedelta(days=args.feedback_days)
    rule = ClickRule(args.min_clicks, args.min_click_rate, args.click_confidence, args.examined_by)
    if (since or until or args.shuffle_clicks or rule != ClickRule()) and args.from_feedback is None:
        raise ValueError(
            "--feedback-since/--feedback-days, --holdout-days, --min-clicks, --min-click-rate, "
            "--click-confidence, --examined-by and --shuffle-clicks need --from-feedback"
        )
    return (
        FeedbackSource(args.from_feedback, since, until, rule, args.shuffle_clicks)
        if args.from_feedback is not None
        else None
    )


def average(args: argparse.Namespace) -> int:
    from bertsearch.jobs.training.average_epochs import average_epochs

    average_epochs(args.model_dir, args.epochs, args.out, args.work_dir)
    epochs = ", ".join(str(e) for e in args.epochs)
    print(f"{args.out}: the mean of epochs {epochs} of {args.model_dir}")
    print(f"next: bertsearch tune-rerank-weight DATASET --split dev --reranker {args.out} --index-dir DIR")
    return 0
