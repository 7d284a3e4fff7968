"""The ``bertsearch`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from jobs import (
    average_epochs,
    commands,
    evaluation,
    pseudo_dev,
    rerank_weight,
    schedule,
    split,
    train,
    transfer_weight,
)


def _add_index(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build a new index version from a corpus")
    p.add_argument("source", type=Path, help="BEIR folder, JSONL(.gz) file, or folder of JSONL files")
    p.add_argument("--index-dir", type=Path, required=True, help="index directory (created if missing)")
    p.add_argument(
        "--model",
        default=None,
        help="embedding model: local folder or Hugging Face id (default: the packaged all-MiniLM-L6-v2)",
    )
    p.add_argument(
        "--dense-index",
        choices=["flat", "hnsw", "ivf"],
        default="flat",
        help="FAISS index type (default: flat, exact)",
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="tokens embedded per document (default 256; with --incremental, the index's)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--keep", type=int, default=3, help="index versions to keep (default 3)")
    p.add_argument(
        "--lexical",
        choices=["tantivy", "elasticsearch"],
        default=os.environ.get("BERTSEARCH_LEXICAL", "tantivy"),
        help="lexical backend (or BERTSEARCH_LEXICAL; default tantivy, embedded on disk)",
    )
    p.add_argument(
        "--es-url",
        default=os.environ.get("BERTSEARCH_ES_URL"),
        help="Elasticsearch URL for --lexical elasticsearch (or BERTSEARCH_ES_URL)",
    )
    p.add_argument(
        "--incremental",
        action="store_true",
        help="apply SOURCE's upserts and deletes ({\"_id\": ..., \"deleted\": true}) to the current version",
    )
    p.add_argument(
        "--all-files",
        action="store_true",
        help="with --incremental: also reapply files older than the current version's watermark",
    )
    p.add_argument(
        "--embed-with",
        choices=["auto", "local", "ray"],
        default="auto",
        help="ray: Ray Data actor pool (local Ray, or RAY_ADDRESS); local: this process; "
        "auto (default): ray for full builds, local for --incremental",
    )
    p.add_argument(
        "--ray-workers", type=int, default=0, help="embedding actors (default: one per GPU, else 1)"
    )
    p.add_argument(
        "--ray-address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else local)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs, schedulers)")
    p.set_defaults(run=commands.index)


def _add_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search an index from the command line")
    p.add_argument("query")
    p.add_argument("--index-dir", type=Path, required=True)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--reranker", default=None, help="trained cross-encoder folder")
    p.add_argument("--no-lexical", action="store_true", help="turn BM25 retrieval off")
    p.add_argument("--no-dense", action="store_true", help="turn dense retrieval off")
    p.add_argument("--json", action="store_true", help="print the same JSON as POST /search")
    p.set_defaults(run=commands.search)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve search over HTTP")
    p.add_argument(
        "--index-dir",
        type=Path,
        default=os.environ.get("BERTSEARCH_INDEX_DIR"),
        help="index directory (or BERTSEARCH_INDEX_DIR)",
    )
    p.add_argument(
        "--reranker",
        default=os.environ.get("BERTSEARCH_RERANKER"),
        help="trained cross-encoder folder (or BERTSEARCH_RERANKER)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(run=commands.serve)


def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample-corpus", help="write the sample corpus (Python standard library docs)")
    p.add_argument(
        "out",
        type=Path,
        help="JSONL file to write; queries.jsonl and qrels/test.tsv (hand-judged queries) go beside it",
    )
    p.set_defaults(run=commands.sample_corpus)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertsearch", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_index, _add_search, _add_serve, _add_sample, evaluation.register, rerank_weight.register,
        transfer_weight.register, split.register, train.register, average_epochs.register,
        pseudo_dev.register, schedule.register,
    ):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.run(args) or 0
    except commands.UserError as err:
        print(f"bertsearch {args.command}: error: {err}", file=sys.stderr)
        return 2


def print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    sys.exit(main())
