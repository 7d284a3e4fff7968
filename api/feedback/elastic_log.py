"""The shared feedback log for several API replicas: Elasticsearch indices ``ubi_queries`` and
``ubi_events`` (the User Behavior Insights names), through the official client.

A query is a document with its ``query_id`` as ``_id``; events are documents of the events index.
``add_events`` checks every ``query_id`` first (one ``mget``) and then bulk-indexes the events,
so a request whose events name an unknown query stores none of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from elasticsearch import Elasticsearch
from elasticsearch.helpers import bulk, scan

from bertsearch.api.feedback.records import Event, QueryRecord, ServedHit, UnknownQueryError

QUERIES_INDEX = "ubi_queries"
EVENTS_INDEX = "ubi_events"


class ElasticsearchLog:
    """A :class:`~bertsearch.api.feedback.records.FeedbackLog` on the Elasticsearch at ``url``;
    ``prefix`` names the indices (``{prefix}ubi_queries``), so tests can keep theirs apart."""

    def __init__(self, url: str, prefix: str = "") -> None:
        self.client = Elasticsearch(url)
        self.queries_index = prefix + QUERIES_INDEX
        self.events_index = prefix + EVENTS_INDEX

    def log_query(self, record: QueryRecord) -> None:
        body = {
            "query_id": record.query_id, "user_query": record.query,
            "timestamp": record.timestamp.isoformat(),
            "hits": [
                {"position": h.position, "object_id": h.object_id, "score": h.score, "scores": dict(h.scores),
                 "explored": h.explored}
                for h in record.hits
            ],
            "index_version": record.index_version, "reranker": record.reranker,
            "rerank_requested": record.rerank_requested, "rerank_scored": record.rerank_scored,
            "degraded_reasons": list(record.degraded_reasons), "client_id": record.client_id,
        }  # fmt: skip
        self.client.index(index=self.queries_index, id=record.query_id, document=body, refresh="wait_for")

    def add_events(self, events: Sequence[Event]) -> int:
        ids = list(dict.fromkeys(e.query_id for e in events))
        found = self.client.mget(index=self.queries_index, ids=ids, source=False)["docs"] if ids else []
        known = {doc["_id"] for doc in found if doc.get("found")}
        for index, event in enumerate(events):
            if event.query_id not in known:
                raise UnknownQueryError(index, event.query_id)
        actions = [
            {"_index": self.events_index, "_source": {
                "query_id": e.query_id, "action_name": e.action_name, "object_id": e.object_id,
                "position": e.position, "timestamp": e.timestamp.isoformat(), "session_id": e.session_id,
                "client_id": e.client_id, "event_attributes": dict(e.attributes)}}
            for e in events
        ]  # fmt: skip
        bulk(self.client, actions, refresh="wait_for")
        return len(events)

    def queries(self, since: datetime | None = None) -> Iterator[QueryRecord]:
        for doc in self._scan(self.queries_index, since):
            s = doc["_source"]
            hits = tuple(
                ServedHit(h["position"], h["object_id"], h["score"], h.get("scores", {}),
                          h.get("explored", False))
                for h in s["hits"]
            )
            yield QueryRecord(
                query_id=s["query_id"], query=s["user_query"],
                timestamp=datetime.fromisoformat(s["timestamp"]),
                hits=hits,
                index_version=s["index_version"], reranker=s.get("reranker"),
                rerank_requested=s.get("rerank_requested", 0), rerank_scored=s.get("rerank_scored", 0),
                degraded_reasons=tuple(s.get("degraded_reasons", ())), client_id=s.get("client_id"),
            )  # fmt: skip

    def events(self, since: datetime | None = None) -> Iterator[Event]:
        for doc in self._scan(self.events_index, since):
            s = doc["_source"]
            yield Event(s["query_id"], s["action_name"], s["object_id"], s["position"],
                        datetime.fromisoformat(s["timestamp"]), s.get("session_id"), s.get("client_id"),
                        s.get("event_attributes", {}))  # fmt: skip

    def prune(self, before: datetime) -> int:
        old = {"range": {"timestamp": {"lt": before.isoformat()}}}
        gone = 0
        for index in (self.events_index, self.queries_index):
            if self.client.indices.exists(index=index):
                gone += self.client.delete_by_query(index=index, query=old, refresh=True)["deleted"]
        return gone

    def close(self) -> None:
        self.client.close()

    def _scan(self, index: str, since: datetime | None):
        if not self.client.indices.exists(index=index):
            return iter(())
        query = {"range": {"timestamp": {"gte": since.isoformat()}}} if since else {"match_all": {}}
        return scan(self.client, index=index, query={"query": query, "sort": [{"timestamp": "asc"}]},
                    preserve_order=True)  # fmt: skip
