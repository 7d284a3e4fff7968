"""``bertsearch eval``, ``tune-rerank-weight`` and ``transfer-rerank-weight``.

Flag names keep one meaning across commands: ``--depth`` is the number of candidates each
retriever returns (and the hits scored); ``--rerank-top-n`` the number of fused candidates the
cross-encoder re-scores (for ``tune-rerank-weight``, the depths to choose among).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bertsearch.jobs.cli.types import DeprecatedAlias, command_line, positive_ints
from bertsearch.jobs.evaluation.config import STAT_TESTS, EvalConfig, known_configs, parse_configs
from bertsearch.jobs.evaluation.operating_point import CHOICE_FILE, WeightChoice
from bertsearch.ranker.model_dir import DEFAULT_RERANK_TOP_N, METADATA_FILE


def register(sub: argparse._SubParsersAction) -> None:
    _add_eval(sub)
    _add_tune(sub)
    _add_transfer(sub)


def _add_eval(sub: argparse._SubParsersAction) -> None:
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
        "--index-dir", type=Path, required=True,
        help="index directory; an index of the dataset's corpus is built there if it has none",
    )
    p.add_argument(
        "--configs", default="bm25,dense,hybrid",
        help=f"comma-separated configurations, the first is the baseline (known: {known_configs()})",
    )
    p.add_argument("--reranker", type=Path, default=None, help="trained cross-encoder folder (for +rerank)")
    p.add_argument(
        "--depth", type=int, default=100, help="candidates per retriever and hits scored (default 100)"
    )
    p.add_argument(
        "--rerank-top-n", type=int, default=None,
        help="candidates the cross-encoder re-scores (default: the reranker's own, from its "
        f"{METADATA_FILE}, else {DEFAULT_RERANK_TOP_N})",
    )
    p.add_argument(
        "--rerank-weight", type=float, default=None,
        help="weight of the reranker's score against the retrieval score, 0-1 (default: the one "
        f"in the model's {METADATA_FILE}, tuned on its dev split; 1 without one)",
    )
    p.add_argument(
        "--stat-test", choices=STAT_TESTS, default="student",
        help="ranx paired test: student (t-test) or fisher (randomisation)",
    )
    p.add_argument("--max-p", type=float, default=0.05, help="p-value below which a difference is marked")
    p.add_argument(
        "--precision", choices=("auto", "fp32", "bf16"), default="auto",
        help="encoder precision (auto: bf16 where the CPU/GPU runs it natively)",
    )
    p.add_argument(
        "--rerank-precision", choices=("auto", "fp32", "bf16"), default="auto",
        help="reranker precision (auto, as served: bf16 where the CPU/GPU runs it natively)",
    )
    p.add_argument(
        "--rerank-max-length", type=int, default=None,
        help="tokens per (query, document) pair the reranker reads (default: the length its "
        f"{METADATA_FILE} records, which serving uses); measures what another length costs",
    )
    p.add_argument(
        "--model", default=None,
        help="encoder to build a missing index with (default: the packaged all-MiniLM-L6-v2)",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the report, run files and plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=evaluate)


def _add_tune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune-rerank-weight",
        help="choose the reranker's weight against retrieval on a judged dev split",
        description=f"Rerank a judged split once, try rerank weights 0.0-1.0 on it, and write the "
        f"best into MODEL_DIR/{METADATA_FILE}, where `serve` and `eval` read it. Use a dev split, "
        "never the one you report.",
    )
    p.add_argument("dataset", type=Path, help="BEIR folder with the judged split")
    p.add_argument("--split", required=True, help="judged dev split to tune on (not your test split)")
    p.add_argument("--reranker", type=Path, required=True, help="MODEL_DIR from `bertsearch train`")
    p.add_argument("--index-dir", type=Path, required=True, help="index of the dataset's corpus")
    p.add_argument("--depth", type=int, default=100, help="candidates per retriever (default 100)")
    top_n = positive_ints("--rerank-top-n", "10,20,30")
    p.add_argument(
        "--rerank-top-n", dest="rerank_top_n", type=top_n, default=None,
        help="candidates reranked (default 50); several (e.g. 10,20,30,40,50) also choose among "
        "them: the largest is reranked once and the others re-ordered from it, and the choice is "
        "written as the model's rerank_top_n",
    )
    p.add_argument(
        "--depths", dest="rerank_top_n", type=top_n, action=DeprecatedAlias, new="--rerank-top-n",
        help=argparse.SUPPRESS,
    )
    p.add_argument(
        "--rerank-max-length", dest="rerank_max_length", default=None,
        type=positive_ints("--rerank-max-length", "128,192,256"),
        help="tokens per (query, document) pair to tune at (default: the length the model records); "
        "several (e.g. 128,192,256) rerank the split once per length and keep the best, the shortest "
        "of equals; the length is written as the model's max_length, which serving reads",
    )
    p.add_argument("--metric", default="ndcg@10", help="metric to maximise (default ndcg@10)")
    p.add_argument(
        "--out", type=Path, default=None,
        help=f"report folder, with the choice and its tables in {CHOICE_FILE} "
        "(default MODEL_DIR.work/tune-SPLIT)",
    )
    p.add_argument(
        "--dry-run", action="store_true",
        help=f"choose and report, but leave MODEL_DIR/{METADATA_FILE} as it is (OUT/{CHOICE_FILE} can then "
        "be pooled by `transfer-rerank-weight`)",
    )
    p.add_argument(
        "--allow-test-split", action="store_true",
        help="tune on a split named test anyway (recorded in the choice and the model folder)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=tune)


def _add_transfer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transfer-rerank-weight",
        help="give a reranker of an unjudged corpus the depth and weight that served judged corpora best",
        description="Pool the tables of `tune-rerank-weight --dry-run` runs made on other, judged "
        "corpora (each with a model trained the same way on that corpus), and write the rerank "
        f"depth and weight with the best mean metric over them into MODEL_DIR/{METADATA_FILE}. "
        "Each corpus counts the same.",
    )
    p.add_argument("--reranker", type=Path, required=True, help="MODEL_DIR to give the operating point")
    p.add_argument(
        "--from", dest="sources", type=Path, nargs="+", required=True,
        help=f"report folders (or {CHOICE_FILE} files) of `tune-rerank-weight --dry-run` on judged corpora",
    )
    p.set_defaults(run=transfer)


def evaluate(args: argparse.Namespace) -> int:
    from bertsearch.jobs.evaluation.runner import run_evaluation

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
        rerank_max_length=args.rerank_max_length,
        rerank_precision=args.rerank_precision,
        model=args.model,
    )
    result = run_evaluation(config, progress=not args.no_progress, command=command_line())
    header = f"{'config':<16}" + "".join(f"{m:>12}" for m in result.metrics) + f"{'wall s':>10}"
    print(header)
    for scores in result.configs:
        print(
            f"{scores.name:<16}"
            + "".join(f"{scores.means[m]:>12.4f}" for m in result.metrics)
            + f"{scores.wall_seconds:>10.1f}"
        )
    print(f"report: {config.out / 'report.md'}")
    return 0


def tune(args: argparse.Namespace) -> int:
    from bertsearch.jobs.evaluation.operating_point import tune as tune_operating_point

    depths = args.rerank_top_n if args.rerank_top_n and len(args.rerank_top_n) > 1 else None
    out = args.out or args.reranker.with_name(args.reranker.name + ".work") / f"tune-{args.split}"
    config = EvalConfig(
        dataset=args.dataset,
        index_dir=args.index_dir,
        out=out,
        split=args.split,
        reranker=args.reranker,
        depth=args.depth,
        rerank_top_n=args.rerank_top_n[0] if args.rerank_top_n and not depths else None,
        per_query_metric=args.metric,
    )
    tuned = tune_operating_point(
        config,
        depths=depths,
        lengths=args.rerank_max_length,
        dry_run=args.dry_run,
        allow_test_split=args.allow_test_split,
        progress=not args.no_progress,
        command=command_line(),
    )
    print(tuned.choice.describe() + (f"; hybrid {tuned.hybrid:.4f}" if tuned.hybrid is not None else ""))
    print_tables(tuned.choice)
    if tuned.by_length:
        print("  tokens " + "  ".join(f"{n}: {value:.4f}" for n, value in tuned.by_length.items()))
        print(f"max_length {tuned.max_length}")
    print(f"choice and tables in {tuned.choice_file}")
    if tuned.record is not None:
        print(f"written to {args.reranker / METADATA_FILE}")
    return 0


def transfer(args: argparse.Namespace) -> int:
    from bertsearch.jobs.evaluation.transfer import transfer as transfer_operating_point

    choice = transfer_operating_point(args.reranker, args.sources)
    print(
        f"rerank weight {choice.weight:.1f} over the top {choice.depth}: mean {choice.metric} "
        f"{choice.value:.4f} over {len(args.sources)} tables of judged corpora"
    )
    print_tables(choice)
    print(f"written to {args.reranker / METADATA_FILE}")
    return 0


def print_tables(choice: WeightChoice) -> None:
    """The metric at every depth (rows) and weight (columns) ``choice`` was made from."""
    tables = choice.by_depth or {choice.depth: choice.by_weight}
    weights = list(next(iter(tables.values())))
    print("  depth " + " ".join(f"{w:6.1f}" for w in weights))
    for depth, by_weight in tables.items():
        print(f"  {depth!s:>5} " + " ".join(f"{by_weight[w]:.4f}" for w in weights))
