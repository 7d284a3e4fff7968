"""The embedded feedback log: one SQLite file (WAL, so readers never block the writer).

Queries and their served hits are rows of ``queries`` (hits as JSON); events are rows of
``events``. One connection, shared by the request threads under a lock: each write is one short
transaction, and ``add_events`` checks every event's ``query_id`` inside the transaction that
stores them, so a request's events land all together or not at all.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from bertsearch.api.feedback.records import Event, QueryRecord, ServedHit, UnknownQueryError

SCHEMA = """
CREATE TABLE IF NOT EXISTS queries (
    query_id TEXT PRIMARY KEY, query TEXT NOT NULL, timestamp TEXT NOT NULL, hits TEXT NOT NULL,
    index_version TEXT NOT NULL, reranker TEXT, rerank_requested INTEGER, rerank_scored INTEGER,
    degraded_reasons TEXT, client_id TEXT
);
CREATE INDEX IF NOT EXISTS queries_time ON queries (timestamp);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, query_id TEXT NOT NULL REFERENCES queries (query_id),
    action_name TEXT NOT NULL, object_id TEXT NOT NULL, position INTEGER NOT NULL,
    timestamp TEXT NOT NULL, session_id TEXT, client_id TEXT, attributes TEXT
);
CREATE INDEX IF NOT EXISTS events_time ON events (timestamp);
CREATE INDEX IF NOT EXISTS events_query ON events (query_id);
"""


class SQLiteLog:
    """A :class:`~bertsearch.api.feedback.records.FeedbackLog` in the SQLite file at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # safe with WAL: a crash loses the last commits at most
        self._db.executescript(SCHEMA)

    def log_query(self, record: QueryRecord) -> None:
        # [position, id, score, scores] and, for an explored hit only, a fifth entry: true
        hits = [[h.position, h.object_id, h.score, dict(h.scores), *([True] if h.explored else [])]
                for h in record.hits]  # fmt: skip
        with self._lock:
            self._db.execute(
                "INSERT INTO queries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.query_id, record.query, record.timestamp.isoformat(), json.dumps(hits),
                 record.index_version, record.reranker, record.rerank_requested, record.rerank_scored,
                 json.dumps(list(record.degraded_reasons)), record.client_id),
            )  # fmt: skip

    def add_events(self, events: Sequence[Event]) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for index, event in enumerate(events):
                    known = self._db.execute("SELECT 1 FROM queries WHERE query_id = ?", (event.query_id,))
                    if known.fetchone() is None:
                        raise UnknownQueryError(index, event.query_id)
                self._db.executemany(
                    "INSERT INTO events (query_id, action_name, object_id, position, timestamp, session_id,"
                    " client_id, attributes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(e.query_id, e.action_name, e.object_id, e.position, e.timestamp.isoformat(),
                      e.session_id, e.client_id, json.dumps(dict(e.attributes))) for e in events],
                )  # fmt: skip
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return len(events)

    def queries(self, since: datetime | None = None) -> Iterator[QueryRecord]:
        for row in self._rows("queries", since, "query_id, query, timestamp, hits, index_version, reranker, "
                              "rerank_requested, rerank_scored, degraded_reasons, client_id"):  # fmt: skip
            qid, query, ts, hits, version, reranker, requested, scored, reasons, client = row
            yield QueryRecord(
                query_id=qid, query=query, timestamp=datetime.fromisoformat(ts),
                hits=tuple(ServedHit(*hit) for hit in json.loads(hits)),
                index_version=version, reranker=reranker, rerank_requested=requested or 0,
                rerank_scored=scored or 0, degraded_reasons=tuple(json.loads(reasons or "[]")),
                client_id=client,
            )  # fmt: skip

    def events(self, since: datetime | None = None) -> Iterator[Event]:
        columns = "query_id, action_name, object_id, position, timestamp, session_id, client_id, attributes"
        for row in self._rows("events", since, columns):
            qid, action, obj, position, ts, session, client, attributes = row
            yield Event(qid, action, obj, position, datetime.fromisoformat(ts), session, client,
                        json.loads(attributes or "{}"))  # fmt: skip

    def prune(self, before: datetime) -> int:
        cutoff = before.isoformat()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            events = self._db.execute(
                "DELETE FROM events WHERE timestamp < ? OR query_id IN "
                "(SELECT query_id FROM queries WHERE timestamp < ?)", (cutoff, cutoff)
            ).rowcount  # fmt: skip
            queries = self._db.execute("DELETE FROM queries WHERE timestamp < ?", (cutoff,)).rowcount
            self._db.execute("COMMIT")
        return events + queries

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _rows(self, table: str, since: datetime | None, columns: str) -> list[tuple]:
        where, args = ("WHERE timestamp >= ?", (since.isoformat(),)) if since is not None else ("", ())
        with self._lock:
            sql = f"SELECT {columns} FROM {table} {where} ORDER BY timestamp, rowid"
            return self._db.execute(sql, args).fetchall()
