"""``bertsearch loco``: leave-one-corpus-out training and evaluation, and the unseen-corpus rule."""

from __future__ import annotations

import argparse
from pathlib import Path

from bertsearch.jobs.cli.training import model_arguments, model_settings
from bertsearch.jobs.cli.types import positive_ints


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "loco",
        help="leave one corpus out: train on the others, evaluate on each held-out collection",
        description="For each collection: train a reranker on the other collections (and --extra), "
        "evaluate it once on the held-out one against hybrid with the paired test, at the depth and "
        "weight chosen on the other held-out collections. Writes WORK/report.md (table, wins/ties/"
        "losses, the slices where reranking hurts) and WORK/unseen_rule.json, the operating point for "
        "corpora a model was not trained on. Rerun to finish an interrupted run.",
    )
    p.add_argument("collections", nargs="+", metavar="DATASET[:SPLIT]",
                   help="BEIR folders to hold out in turn (their judged --split is also what the other "
                   "folds train on)")
    p.add_argument("--index-dir", type=Path, required=True,
                   help="folder of one index per collection (<name>; built there when missing)")
    p.add_argument("--work", type=Path, required=True, help="folder for the folds, the report and the rule")
    p.add_argument("--split", default="test", help="judged split of the collections (default: test)")
    p.add_argument("--extra", default=None, metavar="PATH[:SPLIT[:DEV]],...",
                   help="collections trained on in every fold and never held out (e.g. scifact:train)")
    p.add_argument("--temperature", type=float, default=None,
                   help="mixture sampling temperature (default 2; see `train --mix`)")
    p.add_argument("--epoch-groups", type=int, default=None,
                   help="training groups per epoch of each fold (default: as many as its collections have)")
    p.add_argument("--depths", type=positive_ints("depths", "10,20,30,40,50"), default=None,
                   help="rerank depths of the operating-point grid (default 10,20,30,40,50)")
    p.add_argument("--final-out", type=Path, default=None,
                   help="also train the general model on every collection and write the rule into it")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    g = p.add_argument_group("domain-adaptive pre-training (each fold, on its held-out corpus's documents)")
    g.add_argument("--pretrain-epochs", type=int, default=0,
                   help="masked-LM epochs on the held-out corpus before fine-tuning (default 0: none)")
    g.add_argument("--pretrain-steps", type=int, default=None, help="cap each pre-training epoch")
    g.add_argument("--pretrain-limit", type=int, default=None, help="at most N documents of the corpus")
    g.add_argument("--pretrain-lr", type=float, default=5e-5)
    g.add_argument("--pretrain-head-lr", type=float, default=None,
                   help="the masked-LM head's rate (default: --pretrain-lr; see `pretrain --head-lr`)")
    g.add_argument("--pretrain-batch-size", type=int, default=16)
    model_arguments(p)
    p.set_defaults(run=loco)


def loco(args: argparse.Namespace) -> int:
    from bertsearch.jobs.training.loco import LocoJob, collections_from, run_loco
    from bertsearch.jobs.training.mixture import DEFAULT_TEMPERATURE, MixtureJob, parse_datasets

    held_out = collections_from(args.collections, args.index_dir, args.split)
    extra = tuple(parse_datasets(args.extra, args.index_dir, "train")) if args.extra else ()
    mining, train, scaling = model_settings(args, passage="body")
    template = MixtureJob(
        collections=held_out,
        out=args.work / "unused",
        temperature=DEFAULT_TEMPERATURE if args.temperature is None else args.temperature,
        epoch_groups=args.epoch_groups,
        mining=mining,
        train=train,
        scaling=scaling,
    )
    base, base_settings = _fold_base(args, train, scaling)
    job = LocoJob(collections=held_out, work=args.work, template=template, extra=extra,
                  final_out=args.final_out, fold_base=base, fold_base_settings=base_settings,
                  **({"depths": tuple(args.depths)} if args.depths else {}))
    summary = run_loco(job, progress=not args.no_progress)
    for fold in summary["folds"]:
        mark = " (significant)" if fold["significant"] else ""
        print(f"{fold['collection']}: hybrid {fold['hybrid']:.4f} -> {fold['reranked']:.4f} "
              f"({fold['delta']:+.4f}, p {fold['p']:.3g}{mark}) at top {fold['depth']}, "
              f"w {fold['weight']:.1f}")
    mean, rule = summary["mean"], summary["unseen_rule"]
    print(f"mean: hybrid {mean['hybrid']:.4f} -> {mean['reranked']:.4f}; unseen-corpus rule: top "
          f"{rule['rerank_top_n']}, w {rule['rerank_weight']:.1f}; report: {args.work / 'report.md'}")
    return 0


def _fold_base(args: argparse.Namespace, train, scaling):
    """Pre-training on each held-out corpus and its settings (None, None without --pretrain-epochs)."""
    from bertsearch.jobs.training.loco import pretrain_on_held_out
    from bertsearch.ranker.training.mlm import PretrainConfig

    if args.pretrain_epochs < 0:
        raise ValueError(f"--pretrain-epochs must be 0 or more, got {args.pretrain_epochs}")
    if not args.pretrain_epochs:
        return None, None
    config = PretrainConfig(
        base_model=train.base_model, max_length=train.max_length, epochs=args.pretrain_epochs,
        batch_size=args.pretrain_batch_size, learning_rate=args.pretrain_lr,
        head_learning_rate=args.pretrain_head_lr, precision=train.precision,
        seed=train.seed, max_steps_per_epoch=args.pretrain_steps,
    )
    settings = {**config.hyperparameters(), "limit": args.pretrain_limit}
    return pretrain_on_held_out(config, scaling, args.pretrain_limit), settings
