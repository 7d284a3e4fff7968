"""Reranker scores kept for pairs asked again: a popular query costs its rerank once.

Keyed by (query text, document id); one cache belongs to one pipeline, that is to one index
version and one reranker, so a new index version (a document may have changed) or a new
reranker version starts with an empty cache: the key's reranker and document version are the
pipeline's. Bounded in entries, least recently used out first; safe to share between request
threads. ``hits``/``lookups`` feed the service's metrics.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence


class ScoreCache:
    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._scores: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.lookups = 0

    def get_many(self, query: str, doc_ids: Sequence[str]) -> list[float | None]:
        """The cached score of each (query, id), None where there is none."""
        out: list[float | None] = []
        with self._lock:
            for doc_id in doc_ids:
                key = (query, doc_id)
                score = self._scores.get(key)
                if score is not None:
                    self._scores.move_to_end(key)
                out.append(score)
            self.lookups += len(doc_ids)
            self.hits += sum(score is not None for score in out)
        return out

    def put_many(self, query: str, scores: dict[str, float]) -> None:
        with self._lock:
            for doc_id, score in scores.items():
                self._scores[(query, doc_id)] = float(score)
                self._scores.move_to_end((query, doc_id))
            while len(self._scores) > self.max_entries:
                self._scores.popitem(last=False)

    def __len__(self) -> int:
        return len(self._scores)
