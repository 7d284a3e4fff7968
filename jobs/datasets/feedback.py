"""Click sessions out of the service's feedback log, for ``bertsearch train --from-feedback``.

The log is either the service's SQLite file (``INDEX_DIR/feedback.sqlite3``) or a folder written
by ``bertsearch feedback-export`` (``queries.parquet`` + ``events.parquet``, read with Ray Data,
so that a log too big for one machine's memory is read the way the rest of the job's data is).
One served answer (one ``query_id``) is one session; its ``click`` events are the clicks, its
``impression`` events what the client reported seen.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from bertsearch.api.feedback.records import Event, QueryRecord
from bertsearch.ranker.training.clicks import Session

CLICK = "click"
IMPRESSION = "impression"


def read_sessions(log: Path, since: datetime | None = None, until: datetime | None = None) -> list[Session]:
    """The sessions of ``log`` (a SQLite feedback file or a Parquet export folder) answered in
    [``since``, ``until``), oldest first."""
    log = Path(log)
    if log.is_dir():
        return _parquet_sessions(log, since, until)
    if log.is_file():
        from bertsearch.api.feedback.sqlite_log import SQLiteLog

        store = SQLiteLog(log)
        try:
            queries = [q for q in store.queries(since) if until is None or q.timestamp < until]
            return sessions_of(queries, store.events(since))
        finally:
            store.close()
    raise FileNotFoundError(
        f"{log}: no feedback log there; give the service's SQLite file (INDEX_DIR/feedback.sqlite3) "
        "or a folder written by `bertsearch feedback-export`"
    )


def sessions_of(queries: Iterable[QueryRecord], events: Iterable[Event]) -> list[Session]:
    actions = _actions((e.query_id, e.action_name, e.object_id) for e in events)
    return [
        Session(q.query_id, q.query, tuple(h.object_id for h in sorted(q.hits, key=lambda h: h.position)),
                *_clicked_and_impressed(actions, q.query_id))
        for q in queries
    ]  # fmt: skip


def _actions(events: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str], set[str]]:
    """(query id, action) -> the objects of the click and impression events of (query id, action, object)."""
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for query_id, action, object_id in events:
        if action in (CLICK, IMPRESSION):
            out[query_id, action].add(object_id)
    return out


def _clicked_and_impressed(actions, query_id: str) -> tuple[frozenset[str], frozenset[str]]:
    return frozenset(actions.get((query_id, CLICK), ())), frozenset(actions.get((query_id, IMPRESSION), ()))


def _parquet_sessions(folder: Path, since: datetime | None, until: datetime | None) -> list[Session]:
    import ray.data

    missing = [name for name in ("queries.parquet", "events.parquet") if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder}: no {', '.join(missing)}; write the folder with `bertsearch feedback-export`"
        )
    shown: dict[str, list[tuple[int, str]]] = defaultdict(list)
    texts: dict[str, tuple[datetime, str]] = {}
    for row in ray.data.read_parquet(str(folder / "queries.parquet")).iter_rows():
        answered = row["timestamp"]
        if (since is not None and answered < since) or (until is not None and answered >= until):
            continue
        shown[row["query_id"]].append((row["position"], row["object_id"]))
        texts[row["query_id"]] = (row["timestamp"], row["query"])
    events = ray.data.read_parquet(str(folder / "events.parquet"))
    rows = events.iter_rows() if events.count() else ()
    actions = _actions((row["query_id"], row["action_name"], row["object_id"]) for row in rows)
    order = sorted(texts, key=lambda qid: texts[qid][0])
    return [
        Session(qid, texts[qid][1], tuple(d for _, d in sorted(shown[qid])),
                *_clicked_and_impressed(actions, qid))
        for qid in order
    ]  # fmt: skip
