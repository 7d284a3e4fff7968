"""What the log holds: logged queries and user events (User Behavior Insights shape), and the
:class:`FeedbackLog` role every backend implements."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class ServedHit:
    """One hit as it was served: position (from 1), id, final score, each stage's score, and whether
    exploration put it there (api/exploration.py) rather than its rank."""

    position: int
    object_id: str
    score: float
    scores: Mapping[str, float] = field(default_factory=dict)
    explored: bool = False


@dataclass(frozen=True)
class QueryRecord:
    """One answered query: what was asked and served, by which index and reranker, how fully."""

    query_id: str
    query: str
    timestamp: datetime
    hits: tuple[ServedHit, ...]
    index_version: str
    reranker: str | None = None
    rerank_requested: int = 0
    rerank_scored: int = 0
    degraded_reasons: tuple[str, ...] = ()
    client_id: str | None = None


@dataclass(frozen=True)
class Event:
    """A user's action on a served hit: ``impression``, ``click``, ``dwell``, ... (UBI's action_name)."""

    query_id: str
    action_name: str
    object_id: str
    position: int
    timestamp: datetime
    session_id: str | None = None
    client_id: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


class UnknownQueryError(ValueError):
    """Events name a ``query_id`` the log never served; ``index`` is the first such event's."""

    def __init__(self, index: int, query_id: str) -> None:
        self.index = index
        self.query_id = query_id
        super().__init__(f"events[{index}].query_id: no logged query has id {query_id!r}")


@runtime_checkable
class FeedbackLog(Protocol):
    """Where queries and events are kept. ``add_events`` stores all of its events or none."""

    def log_query(self, record: QueryRecord) -> None: ...

    def add_events(self, events: Sequence[Event]) -> int:
        """Store ``events`` (all or none); UnknownQueryError when one names an unlogged query."""
        ...

    def queries(self, since: datetime | None = None) -> Iterator[QueryRecord]: ...

    def events(self, since: datetime | None = None) -> Iterator[Event]: ...

    def prune(self, before: datetime) -> int:
        """Delete queries and events older than ``before``; returns how many records went."""
        ...

    def close(self) -> None: ...


def export_parquet(log: FeedbackLog, folder: str | Path, since: datetime | None = None) -> list[Path]:
    """Write ``queries.parquet`` (one row per served hit) and ``events.parquet`` into ``folder``,
    for training to read with Ray Data (``ray.data.read_parquet``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    served = [
        {"query_id": q.query_id, "query": q.query, "timestamp": q.timestamp, "index_version": q.index_version,
         "reranker": q.reranker, "position": h.position, "object_id": h.object_id, "score": h.score,
         "explored": h.explored, "rerank_scored": q.rerank_scored, "rerank_requested": q.rerank_requested}
        for q in log.queries(since) for h in q.hits
    ]  # fmt: skip
    events = [
        {"query_id": e.query_id, "action_name": e.action_name, "object_id": e.object_id,
         "position": e.position, "timestamp": e.timestamp, "session_id": e.session_id,
         "client_id": e.client_id}
        for e in log.events(since)
    ]  # fmt: skip
    paths = [folder / "queries.parquet", folder / "events.parquet"]
    for rows, path in zip((served, events), paths, strict=True):
        pq.write_table(pa.Table.from_pylist(rows), path)
    return paths
