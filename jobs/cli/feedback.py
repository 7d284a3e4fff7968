"""``bertsearch feedback-export``: the query and event log as Parquet, for training with Ray Data."""

from __future__ import annotations

import argparse
from pathlib import Path

from bertsearch.jobs.cli.types import utc_time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "feedback-export",
        help="write the service's logged queries and events as Parquet (queries.parquet, events.parquet)",
    )
    p.add_argument("--db", type=Path, required=True, help="SQLite feedback log (INDEX_DIR/feedback.sqlite3)")
    p.add_argument("--out", type=Path, required=True, help="folder to write")
    p.add_argument("--since", type=utc_time, default=None, help="only records from this time on (ISO 8601)")
    p.set_defaults(run=export)


def export(args: argparse.Namespace) -> int:
    from bertsearch.api.feedback.records import export_parquet
    from bertsearch.api.feedback.sqlite_log import SQLiteLog

    if not args.db.is_file():
        raise FileNotFoundError(
            f"{args.db}: no feedback log there (the service writes INDEX_DIR/feedback.sqlite3)"
        )
    log = SQLiteLog(args.db)
    try:
        for path in export_parquet(log, args.out, since=args.since):
            print(f"wrote {path}")
    finally:
        log.close()
    return 0
