"""``bertsearch index``: build an index version from a corpus, or apply an incremental update."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    _add_index(sub)


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
        "--dense-index", choices=["flat", "hnsw", "ivf"], default="flat",
        help="FAISS index type (default: flat, exact)",
    )
    p.add_argument(
        "--max-length", type=int, default=None,
        help="tokens embedded per document (default 256; with --incremental, the index's)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--keep", type=int, default=3, help="index versions to keep (default 3)")
    p.add_argument(
        "--lexical", choices=["tantivy", "elasticsearch"],
        default=os.environ.get("BERTSEARCH_LEXICAL", "tantivy"),
        help="lexical backend (or BERTSEARCH_LEXICAL; default tantivy, embedded on disk)",
    )
    p.add_argument(
        "--es-url", default=os.environ.get("BERTSEARCH_ES_URL"),
        help="Elasticsearch URL for --lexical elasticsearch (or BERTSEARCH_ES_URL)",
    )
    p.add_argument(
        "--incremental", action="store_true",
        help="apply SOURCE's upserts and deletes ({\"_id\": ..., \"deleted\": true}) to the current version",
    )
    p.add_argument(
        "--all-files", action="store_true",
        help="with --incremental: also reapply files older than the current version's watermark",
    )
    p.add_argument(
        "--embed-with", choices=["auto", "local", "ray"], default="auto",
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
    p.set_defaults(run=index)


def index(args: argparse.Namespace) -> int:
    from bertsearch.indexer.lexical_backend import LexicalBackend
    from bertsearch.jobs.indexing.job import IndexJob, run_build, run_update

    job = IndexJob(
        source=Path(args.source),
        index_dir=Path(args.index_dir),
        incremental=args.incremental,
        all_files=args.all_files,
        model=args.model,
        dense_index=args.dense_index,
        max_length=args.max_length,
        batch_size=args.batch_size,
        keep=args.keep,
        embed_with=args.embed_with,
        ray_workers=args.ray_workers,
        ray_address=args.ray_address,
        progress=not args.no_progress,
        lexical=LexicalBackend(kind=args.lexical, es_url=args.es_url),
    )
    report = run_update(job) if job.incremental else run_build(job)
    print(report.summary())
    if report.rejects:
        print(
            f"{len(report.rejects)} lines rejected (also in {report.path / 'rejects.jsonl'}):",
            file=sys.stderr,
        )
        for reject in report.rejects[:20]:
            print(f"  {reject}", file=sys.stderr)
        if len(report.rejects) > 20:
            print(f"  ... and {len(report.rejects) - 20} more", file=sys.stderr)
    return 0
