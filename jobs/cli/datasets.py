"""``bertsearch sample-corpus``, ``split`` and ``pseudo-dev``: make and prepare datasets."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    _add_sample(sub)
    _add_split(sub)
    _add_pseudo_dev(sub)


def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample-corpus", help="write the sample corpus (Python standard library docs)")
    p.add_argument(
        "out",
        type=Path,
        help="JSONL file to write; queries.jsonl and qrels/test.tsv (hand-judged queries) go beside it",
    )
    p.set_defaults(run=sample_corpus)


def _add_split(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "split",
        help="carve a dev split off a judged split (by query, seeded)",
        description="Write qrels/<train-name>.tsv (the rest) and qrels/dev.tsv (the carved queries) "
        "into --out, a mirror of the dataset, or next to the dataset's own qrels.",
    )
    p.add_argument("dataset", type=Path, help="BEIR folder")
    p.add_argument("--from", dest="source", default="train", help="split to carve from (default: train)")
    p.add_argument("--dev-fraction", type=float, default=0.2, help="share of its queries that go to dev")
    p.add_argument("--seed", type=int, default=13, help="random seed (recorded in qrels/<dev>.split.json)")
    p.add_argument(
        "--out", type=Path, default=None,
        help="folder to write a mirror of the dataset into (links; the dataset is not modified)",
    )
    p.add_argument(
        "--train-name", default=None,
        help="name of the remaining split (default: the source name; required without --out)",
    )
    p.add_argument("--dev-name", default="dev", help="name of the carved split (default: dev)")
    p.add_argument(
        "--copy", action="store_true", help="copy the dataset's files into --out instead of linking"
    )
    p.add_argument("--overwrite", action="store_true", help="replace split files that exist")
    p.set_defaults(run=split)


def _add_pseudo_dev(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pseudo-dev",
        help="write a pseudo-judged dev split of a corpus for a label-free reranker",
        description="For N of the documents `bertsearch train --pseudo-queries crop` trains on (same "
        "--pseudo-limit and --seed), cut out a second sentence as a dev query and write a BEIR folder: "
        "the corpus with those sentences removed, the queries, qrels/dev.tsv. Then run "
        "`bertsearch tune-rerank-weight OUT --split dev --index-dir OUT/index --reranker MODEL_DIR`.",
    )
    p.add_argument("dataset", type=Path, help="BEIR folder (or a folder holding corpus.jsonl[.gz])")
    p.add_argument("--out", type=Path, required=True, help="folder to write")
    p.add_argument("--queries", type=int, default=200, help="dev queries to make (default 200)")
    p.add_argument("--pseudo-limit", type=int, default=None, help="as given to `train` (default: none)")
    p.add_argument("--seed", type=int, default=13, help="as given to `train` (default 13)")
    p.set_defaults(run=pseudo_dev)


def sample_corpus(args: argparse.Namespace) -> int:
    from bertsearch.jobs.datasets.sample_corpus import write_sample_corpus, write_sample_queries

    count = write_sample_corpus(args.out)
    print(f"wrote {count} documents to {args.out}")
    judged = write_sample_queries(args.out)
    print(f"wrote {judged} judged queries beside it (queries.jsonl, qrels/test.tsv) for `bertsearch eval`")
    return 0


def split(args: argparse.Namespace) -> int:
    from bertsearch.jobs.datasets.beir import QRELS_DIR
    from bertsearch.jobs.datasets.split import SplitConfig, split_dataset

    record = split_dataset(
        SplitConfig(
            dataset=args.dataset,
            source=args.source,
            dev_fraction=args.dev_fraction,
            seed=args.seed,
            out=args.out,
            train_name=args.train_name,
            dev_name=args.dev_name,
            copy=args.copy,
            overwrite=args.overwrite,
        )
    )
    where = args.out if args.out is not None else args.dataset
    print(
        f"{record.source_split} ({record.train_queries + record.dev_queries} queries) -> "
        f"{record.train_split}: {record.train_queries}, {record.dev_split}: {record.dev_queries} "
        f"(seed {record.seed}) in {Path(where) / QRELS_DIR}"
    )
    return 0


def pseudo_dev(args: argparse.Namespace) -> int:
    from bertsearch.jobs.datasets.pseudo_dev import SPLIT, make_pseudo_dev
    from bertsearch.ranker.training.pseudo_queries import PseudoQueryConfig

    config = PseudoQueryConfig("crop", limit=args.pseudo_limit, seed=args.seed, dev=args.queries)
    corpus, count = make_pseudo_dev(args.dataset, args.out, config)
    print(f"{count} dev queries from {corpus} -> {args.out} (split {SPLIT!r})")
    return 0
