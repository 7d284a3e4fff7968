"""``bertsearch pretrain``: domain-adaptive masked-LM pre-training of BERT on a corpus, on Ray Train.

The folder it writes is a starting point for ``bertsearch train --base-model OUT``, not a
reranker: it has no relevance head, and serving refuses it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bertsearch.jobs.cli.training import ray_arguments, ray_scaling


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="continue BERT's masked-LM pre-training on a corpus (domain adaptation), on Ray Train",
        description="Cut the corpus's documents (title + text) into chunks of --max-length tokens, train "
        "BERT's masked-language-model objective on them with Ray Train workers (a checkpoint per epoch; "
        "rerun to resume), and write the last epoch to --out, for `bertsearch train --base-model OUT`.",
    )
    p.add_argument(
        "corpus",
        type=Path,
        help="BEIR folder (its corpus.jsonl[.gz]), a corpus.jsonl[.gz] file or a folder of JSONL files",
    )
    p.add_argument("--out", type=Path, required=True, help="folder to write (replaced when it exists)")
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="Ray checkpoints and the run's settings (default: OUT.work); rerun to resume",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="clear the work folder first: start over instead of resuming an earlier run",
    )
    p.add_argument("--limit", type=int, default=None, help="at most N documents (the first N)")
    g = p.add_argument_group("training")
    g.add_argument(
        "--base-model",
        default=None,
        help="initial weights: a folder or Hugging Face id (default: the packaged MiniLM)",
    )
    g.add_argument("--epochs", type=int, default=1)
    g.add_argument("--max-length", type=int, default=256, help="tokens per chunk, special tokens included")
    g.add_argument("--batch-size", type=int, default=16, help="chunks per worker per optimizer step")
    g.add_argument("--lr", type=float, default=5e-5, help="learning rate (default 5e-5)")
    g.add_argument("--head-lr", type=float, default=None,
                   help="the masked-LM head's rate (default: --lr); a model without masked-LM weights, "
                   "such as the packaged MiniLM, starts that head fresh (docs/training.md)")
    g.add_argument("--warmup-ratio", type=float, default=0.1)
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument(
        "--mlm-probability", type=float, default=0.15, help="share of tokens masked (default 0.15)"
    )
    g.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    g.add_argument("--seed", type=int, default=13)
    g.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap each epoch (smoke runs)")
    ray_arguments(p)
    p.set_defaults(run=pretrain)


def pretrain(args: argparse.Namespace) -> int:
    from bertsearch.jobs.training.pretrain import run

    outcome = run(_pretrain_job(args))
    for epoch in outcome.history:
        shown = {k: epoch[k] for k in ("mlm_loss", "tokens_per_s", "train_seconds")}
        print(f"epoch {epoch['epoch']}: " + " ".join(f"{k}={v:.4g}" for k, v in shown.items()))
    print(f"pre-trained -> {outcome.model_dir} ({outcome.seconds:.0f} s)")
    print(f"next: bertsearch train DATASET --base-model {outcome.model_dir} --index-dir DIR --out MODEL_DIR")
    return 0


def _pretrain_job(args: argparse.Namespace):
    from bertsearch.jobs.training.pretrain import PretrainJob
    from bertsearch.ranker.training.mlm import PretrainConfig

    return PretrainJob(
        corpus=args.corpus,
        out=args.out,
        work_dir=args.work_dir,
        fresh=args.fresh,
        limit=args.limit,
        train=PretrainConfig(
            base_model=args.base_model,
            max_length=args.max_length,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            head_learning_rate=args.head_lr,
            weight_decay=args.weight_decay,
            warmup_ratio=args.warmup_ratio,
            mlm_probability=args.mlm_probability,
            precision=args.precision,
            seed=args.seed,
            max_steps_per_epoch=args.max_steps_per_epoch,
        ),
        scaling=ray_scaling(args),
    )
