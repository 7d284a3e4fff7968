"""``bertsearch feedback-export``: the query and event log as Parquet, for training with Ray Data."""

from __future__ import annotations

import argparse
from pathlib import Path

from bertsearch.jobs.cli.errors import UserError
from bertsearch.jobs.cli.types import utc_time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "feedback-export",
        help="write the service's logged queries and events as Parquet (queries.parquet, events.parquet)",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--db", type=Path, help="SQLite feedback log (INDEX_DIR/feedback.sqlite3)")
    source.add_argument(
        "--es-url",
        help="the Elasticsearch that several replicas log to (BERTSEARCH_FEEDBACK_LOG=elasticsearch): "
        "its ubi_queries / ubi_events indices",
    )
    p.add_argument("--es-prefix", default="", help="with --es-url: prefix of the two index names")
    p.add_argument("--out", type=Path, required=True, help="folder to write")
    p.add_argument("--since", type=utc_time, default=None, help="only records from this time on (ISO 8601)")
    p.set_defaults(run=export)


def export(args: argparse.Namespace) -> int:
    from bertsearch.api.feedback.records import FeedbackLog, export_parquet

    log: FeedbackLog
    unreachable: tuple[type[Exception], ...] = ()
    if args.es_url:
        from elasticsearch import ConnectionError as ElasticsearchUnreachable

        from bertsearch.api.feedback.elastic_log import ElasticsearchLog

        log = ElasticsearchLog(args.es_url, prefix=args.es_prefix)
        unreachable = (ElasticsearchUnreachable,)
    else:
        from bertsearch.api.feedback.sqlite_log import SQLiteLog

        if not args.db.is_file():
            raise FileNotFoundError(
                f"{args.db}: no feedback log there (the service writes INDEX_DIR/feedback.sqlite3)"
            )
        log = SQLiteLog(args.db)
    try:
        for path in export_parquet(log, args.out, since=args.since):
            print(f"wrote {path}")
    except unreachable as err:
        raise UserError(f"cannot reach Elasticsearch at {args.es_url} ({err}); is it running?") from err
    finally:
        log.close()
    return 0
