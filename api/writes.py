"""Document writes through the API: each one an incremental update that publishes a new version."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence

from bertsearch.api.serving import ServingState, VersionWatcher
from bertsearch.api.settings import ServiceSettings
from bertsearch.indexer.doc_embedding import LocalEmbedding
from bertsearch.indexer.documents import Document
from bertsearch.indexer.embedder import Embedder
from bertsearch.indexer.incremental import UpdateReport, apply_updates


class WritesDisabledError(RuntimeError):
    """The service has no API key configured, so it accepts no writes."""


class MissingKeyError(PermissionError):
    """A write came without an X-API-Key header."""


class WrongKeyError(PermissionError):
    """A write came with a key that is not the configured one."""


def check_api_key(settings: ServiceSettings, given: str | None) -> None:
    """Raise unless ``given`` is the configured key (compared in constant time)."""
    if not settings.api_key:
        raise WritesDisabledError(
            "writes are disabled on this service: start it with BERTSEARCH_API_KEY set to enable "
            "PUT /documents and DELETE /documents/{id}"
        )
    if not given:
        raise MissingKeyError("writes need the API key in the X-API-Key header")
    if not secrets.compare_digest(given.encode(), settings.api_key.encode()):
        raise WrongKeyError("the X-API-Key header does not hold the configured API key")


class DocumentWriter:
    """Applies upserts and deletes to the index directory, then serves the version they produce.

    Writes are serialised here and, across processes, by the index directory's writer lock
    (IndexBusyError when a build holds it longer than ``write_lock_seconds``). Documents are
    embedded by a second copy of the query encoder's model, loaded on the first write, so writes
    never share a tokenizer with queries running at the same time.
    """

    def __init__(self, settings: ServiceSettings, watcher: VersionWatcher) -> None:
        self.settings = settings
        self.watcher = watcher
        self._lock = threading.Lock()
        self._embedding: LocalEmbedding | None = None

    def _strategy(self, state: ServingState) -> LocalEmbedding:
        if self._embedding is None:
            encoder = state.pipeline.encoder
            embedder = Embedder(encoder.model_name, max_length=encoder.max_length).load()
            self._embedding = LocalEmbedding(embedder)
        return self._embedding

    def write(self, state: ServingState, upserts: Sequence[Document], deletes: Sequence[str]) -> UpdateReport:
        """Apply the changes as a new version and switch the service to it before returning."""
        with self._lock:
            report = apply_updates(
                self.settings.index_dir,
                upserts,
                deletes,
                self._strategy(state),
                keep_versions=self.settings.keep_versions,
                source="api",
                lock_timeout=self.settings.write_lock_seconds,
            )
            self.watcher.check()  # read-your-writes: the next request sees this version
            return report
