"""A bound on the searches answered at once.

The rerank queue has its own bound (the scoring worker's ``max_queue_ms``), but retrieval runs in
the request threads: once BM25, query encoding and fusion alone saturate the CPUs, every extra
concurrent search makes all of them slower. Past ``max_concurrent_searches`` the service refuses
at once with 503 and Retry-After, as Elasticsearch's search thread pool rejects past its queue.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import HTTPException

RETRY_AFTER_S = 1


class SearchSlots:
    """``limit`` searches at once (0: no limit); ``held()`` takes one for a request or refuses."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit) if limit > 0 else None

    @contextmanager
    def held(self) -> Iterator[None]:
        if self._slots is None:
            yield
            return
        if not self._slots.acquire(blocking=False):
            raise HTTPException(
                status_code=503,
                detail=f"the service is answering {self.limit} searches already "
                f"(BERTSEARCH_MAX_CONCURRENT_SEARCHES); retry after {RETRY_AFTER_S} s",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        try:
            yield
        finally:
            self._slots.release()
