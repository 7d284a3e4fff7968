"""The production lexical backend: an Elasticsearch index, through the official client.

The index is created on the first write with a fixed mapping: ``id`` as a keyword, ``title``,
``text`` and ``body`` (title + text) as ``text`` analysed by Elasticsearch's built-in ``english``
analyzer, ``metadata`` kept in ``_source`` but not indexed. ``body`` is indexed only (left out of
``_source``), as in :mod:`bertsearch.indexer.tantivy_index`. Scores are Elasticsearch's default BM25
(k1 = 1.2, b = 0.75); its English analyzer (Porter stemmer, possessive filter) is close to, not
identical with, the tantivy one, so the two backends rank alike but score differently.

Index versions live behind an alias: :meth:`ElasticsearchIndex.for_version` names the concrete
index ``{alias}-{version}``, and :meth:`ElasticsearchIndex.promote` moves the alias to it in one
atomic ``update_aliases`` call. Readers open ``ElasticsearchIndex(url, alias)``.

This is the only module of the lexical backend that imports :mod:`elasticsearch` (the feedback log
has its own, ``api/feedback/elastic_log.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from elasticsearch import (
    BadRequestError,
    ConnectionTimeout,
    Elasticsearch,
    NotFoundError,
    SerializationError,
)
from elasticsearch import ConnectionError as ESConnectionError
from elasticsearch.helpers import streaming_bulk

from bertsearch.indexer.documents import Document, Hit
from bertsearch.indexer.elastic_explain import term_weights
from bertsearch.indexer.lexical import LEXICAL_STAGE, IndexingFailure, TermMatch

URL_ENV = "BERTSEARCH_ES_URL"
SEARCHABLE_FIELDS = ("title", "text", "body")
MAX_ID_BYTES = 512  # Elasticsearch rejects longer _id values
BULK_CHUNK_DOCS = 500
BULK_RETRIES = 3  # for items rejected with 429 (a busy cluster), then reported as failures
MGET_CHUNK = 1000

MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    # body is title + text again: index it, do not store it twice.
    "_source": {"excludes": ["body"]},
    "properties": {
        "id": {"type": "keyword"},
        "title": {"type": "text", "analyzer": "english"},
        "text": {"type": "text", "analyzer": "english"},
        "body": {"type": "text", "analyzer": "english"},
        "metadata": {"type": "object", "enabled": False},
    },
}

_INDEX_NAME_FORBIDDEN = re.compile(r'[\\/*?"<>| ,#:]')


class ElasticsearchUnavailable(ConnectionError):
    """The Elasticsearch server could not be reached (down, wrong URL, TLS or timeout)."""


class ElasticsearchIndexError(RuntimeError):
    """Elasticsearch answered, but refused an operation this backend cannot report otherwise."""


def check_index_name(name: str) -> str:
    """``name`` if Elasticsearch accepts it as an index or alias name; ``ValueError`` otherwise."""
    problem = None
    if not name or name in {".", ".."}:
        problem = "it is empty, '.' or '..'"
    elif name != name.lower():
        problem = "it has upper-case letters"
    elif name[0] in "-_+":
        problem = "it starts with '-', '_' or '+'"
    elif _INDEX_NAME_FORBIDDEN.search(name):
        problem = 'it contains one of \\ / * ? " < > | , # : or a space'
    elif len(name.encode("utf-8")) > 255:
        problem = "it is longer than 255 bytes"
    if problem:
        raise ValueError(f"{name!r} is not a valid Elasticsearch index name: {problem}")
    return name


def _redacted(url: str) -> str:
    """``url`` without a password, fit for an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _id_problem(doc_id: str) -> str | None:
    # Elasticsearch fails a whole bulk request on these, so they are refused one by one here.
    if not doc_id:
        return "empty document id"
    if len(doc_id.encode("utf-8")) > MAX_ID_BYTES:
        return f"document id longer than {MAX_ID_BYTES} bytes (an Elasticsearch limit)"
    return None


def _item_reason(info: dict[str, Any]) -> str:
    """A one-line reason from a failed bulk item."""
    error = info.get("error")
    status = info.get("status")
    if isinstance(error, dict):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}".rstrip(": ")
        caused_by = error.get("caused_by")
        if isinstance(caused_by, dict) and caused_by.get("reason"):
            reason += f" (caused by {caused_by.get('type', 'error')}: {caused_by['reason']})"
    else:
        reason = str(error) if error is not None else "unknown error"
    return f"HTTP {status}: {reason}" if status is not None else reason


class ElasticsearchIndex:
    """A :class:`~bertsearch.indexer.lexical.LexicalIndex` kept in one Elasticsearch index (or alias).

    ``url_or_client`` is a URL such as ``http://localhost:9200`` or a ready
    :class:`elasticsearch.Elasticsearch`. Nothing is sent to the server until the first call:
    the index is created with :data:`MAPPINGS` on the first write, and reading an index that
    does not exist yet finds nothing (``count() == 0``). ``fields`` are the fields ``search``
    matches (their BM25 scores add up). ``commit`` refreshes the index unless
    ``refresh_on_commit`` is false, in which case writes show up after Elasticsearch's own
    refresh interval.

    Every method raises :class:`ElasticsearchUnavailable` when the server cannot be reached.
    """

    def __init__(
        self,
        url_or_client: str | Elasticsearch,
        index: str,
        *,
        fields: Sequence[str] = ("body",),
        refresh_on_commit: bool = True,
    ) -> None:
        self.index = check_index_name(index)
        self.fields = list(fields)
        unknown = [f for f in self.fields if f not in SEARCHABLE_FIELDS]
        if not self.fields or unknown:
            raise ValueError(
                f"fields must be a non-empty selection of {SEARCHABLE_FIELDS}, got {list(fields)}"
            )
        self.refresh_on_commit = refresh_on_commit
        if isinstance(url_or_client, str):
            self._url = _redacted(url_or_client)
            try:
                self.client = Elasticsearch(url_or_client)
            except ValueError as e:
                raise ValueError(
                    f"{self._url!r} is not a usable Elasticsearch URL ({e}); "
                    f"set {URL_ENV} to one such as http://localhost:9200"
                ) from e
            self._owns_client = True
        else:
            self._url = None
            self.client = url_or_client
            self._owns_client = False
        self._created = False

    @classmethod
    def for_version(
        cls, url_or_client: str | Elasticsearch, alias: str, version: str | int, **options: Any
    ) -> ElasticsearchIndex:
        """The concrete index ``{alias}-{version}``, to build and then :meth:`promote` to ``alias``."""
        check_index_name(alias)
        return cls(url_or_client, f"{alias}-{version}", **options)

    @property
    def url(self) -> str:
        """The server this index talks to, without credentials."""
        if self._url is not None:
            return self._url
        try:
            return ", ".join(node.base_url for node in self.client.transport.node_pool.all())
        except AttributeError:  # a client built some other way: say what we can
            return repr(self.client)

    @contextmanager
    def _talking(self) -> Iterator[None]:
        """Turn transport failures into errors that say where and what to change."""
        try:
            yield
        except (ESConnectionError, ConnectionTimeout) as e:
            raise ElasticsearchUnavailable(
                f"cannot reach Elasticsearch at {self.url} ({type(e).__name__}: {e}); start the server "
                f"(docker compose up -d elasticsearch) or set {URL_ENV} to a reachable one"
            ) from e
        except BadRequestError as e:
            if e.error == "media_type_header_exception":
                raise ElasticsearchIndexError(
                    f"the Elasticsearch server at {self.url} does not speak this client's REST API "
                    "version; install the `elasticsearch` Python client with the server's major "
                    "version (for example elasticsearch>=8.15,<9 for an 8.x server)"
                ) from e
            raise

    # -- writes -----------------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the index (or alias) exists on the server."""
        with self._talking():
            return bool(self.client.indices.exists(index=self.index))

    def _ensure_index(self) -> None:
        if self._created:
            return
        with self._talking():
            # exists() is true for an alias too: writing through an alias must not create an index.
            if not self.client.indices.exists(index=self.index):
                try:
                    self.client.indices.create(index=self.index, mappings=MAPPINGS)
                except BadRequestError as e:
                    if e.error != "resource_already_exists_exception":  # another writer won the race
                        raise
        self._created = True

    def upsert(self, documents: Iterable[Document]) -> list[IndexingFailure]:
        """Index or replace ``documents`` by id; every document Elasticsearch refused is returned.

        Ids that Elasticsearch cannot take (empty, over 512 bytes) and sources that cannot be
        serialised are refused here without being sent. Raises :class:`ElasticsearchUnavailable`
        if the server goes away (documents sent before that stay indexed).
        """
        self._ensure_index()
        failures: list[IndexingFailure] = []
        serializer = self.client.transport.serializers.get_serializer("application/json")

        def actions() -> Iterator[dict[str, Any]]:
            for doc in documents:
                problem = _id_problem(doc.id)
                if problem is None:
                    source = {
                        "id": doc.id,
                        "title": doc.title,
                        "text": doc.text,
                        "body": doc.body,
                        "metadata": dict(doc.metadata),
                    }
                    try:
                        # Serialised one by one so that one bad document fails alone, not its chunk.
                        payload = serializer.dumps(source)
                    except SerializationError as e:
                        problem = f"cannot serialise the document as JSON: {e}"
                if problem is not None:
                    failures.append(IndexingFailure(doc.id, problem))
                    continue
                yield {"_op_type": "index", "_index": self.index, "_id": doc.id, "_source": payload}

        with self._talking():
            for ok, item in streaming_bulk(
                self.client,
                actions(),
                chunk_size=BULK_CHUNK_DOCS,
                max_retries=BULK_RETRIES,
                raise_on_error=False,
                raise_on_exception=False,
            ):
                if not ok:
                    info = next(iter(item.values()))
                    failures.append(IndexingFailure(str(info.get("_id", "")), _item_reason(info)))
        return failures

    def delete(self, ids: Iterable[str]) -> None:
        """Remove documents by id; unknown ids are ignored.

        Raises :class:`ElasticsearchIndexError` naming the ids Elasticsearch failed to delete.
        """
        self._ensure_index()
        actions = (
            {"_op_type": "delete", "_index": self.index, "_id": doc_id}
            for doc_id in ids
            if _id_problem(doc_id) is None  # such an id was never indexed
        )
        failed: list[str] = []
        with self._talking():
            for ok, item in streaming_bulk(
                self.client,
                actions,
                chunk_size=BULK_CHUNK_DOCS,
                max_retries=BULK_RETRIES,
                raise_on_error=False,
                raise_on_exception=False,
            ):
                info = next(iter(item.values()))
                if not ok and info.get("status") != 404:
                    failed.append(f"{info.get('_id')!r} ({_item_reason(info)})")
        if failed:
            shown = "; ".join(failed[:10]) + (f"; and {len(failed) - 10} more" if len(failed) > 10 else "")
            raise ElasticsearchIndexError(f"Elasticsearch index {self.index!r} failed to delete {shown}")

    def commit(self) -> None:
        """Refresh the index so that every write so far is searchable (writes are already durable)."""
        if not self.refresh_on_commit:
            return
        with self._talking():
            try:
                self.client.indices.refresh(index=self.index)
            except NotFoundError as e:
                if e.error != "index_not_found_exception":  # nothing written yet: nothing to show
                    raise

    # -- reads ------------------------------------------------------------------------------

    def _query(self, query: str) -> dict[str, Any]:
        if len(self.fields) == 1:
            return {"match": {self.fields[0]: {"query": query}}}
        # most_fields sums the per-field scores, as the tantivy backend does.
        return {"multi_match": {"query": query, "fields": self.fields, "type": "most_fields"}}

    def search(self, query: str, k: int) -> list[Hit]:
        """The top ``k`` documents for ``query``, matched as plain text (no query syntax)."""
        if k <= 0 or not query.strip():
            return []
        body = self._query(query)
        with self._talking():
            try:
                response = self.client.search(
                    index=self.index, query=body, size=k, source=False, track_total_hits=False
                )
            except NotFoundError as e:
                if e.error == "index_not_found_exception":
                    return []
                raise
        return [
            Hit(id=hit["_id"], score=float(hit["_score"]), scores={LEXICAL_STAGE: float(hit["_score"])})
            for hit in response["hits"]["hits"]
        ]

    def get(self, ids: Sequence[str]) -> dict[str, Document]:
        """The stored documents among ``ids``; missing ids are absent from the result."""
        wanted = [doc_id for doc_id in dict.fromkeys(ids) if _id_problem(doc_id) is None]
        found: dict[str, Document] = {}
        with self._talking():
            for start in range(0, len(wanted), MGET_CHUNK):
                try:
                    response = self.client.mget(index=self.index, ids=wanted[start : start + MGET_CHUNK])
                except NotFoundError as e:
                    if e.error == "index_not_found_exception":
                        return {}
                    raise
                for doc in response["docs"]:
                    if "error" in doc:
                        error = doc["error"]
                        if isinstance(error, dict) and error.get("type") == "index_not_found_exception":
                            return {}
                        raise ElasticsearchIndexError(
                            f"Elasticsearch could not get {doc.get('_id')!r} from {self.index!r}: {error}"
                        )
                    if doc.get("found"):
                        source = doc["_source"]
                        found[doc["_id"]] = Document(
                            id=doc["_id"],
                            title=source.get("title", ""),
                            text=source.get("text", ""),
                            metadata=source.get("metadata") or {},
                        )
        return found

    def explain(self, query: str, doc_id: str) -> list[TermMatch]:
        """The matched terms of ``doc_id`` from Elasticsearch's ``_explain`` of the search query."""
        if not query.strip() or _id_problem(doc_id) is not None:
            return []
        with self._talking():
            try:
                response = self.client.explain(index=self.index, id=doc_id, query=self._query(query))
                stored = self.get([doc_id]).get(doc_id)
            except NotFoundError:
                return []
        if not response.get("matched") or stored is None:
            return []
        analyzed = {"title": self._analyzed(stored.title), "text": self._analyzed(stored.text)}
        matches = []
        for field, term, score in term_weights(response["explanation"]):
            fields = tuple(name for name, terms in analyzed.items() if term in terms)
            matches.append(TermMatch(term, score, field, fields))
        return sorted(matches, key=lambda m: -m.score)

    def _analyzed(self, text: str) -> set[str]:
        if not text:
            return set()
        with self._talking():
            tokens = self.client.indices.analyze(index=self.index, analyzer="english", text=text)["tokens"]
        return {t["token"] for t in tokens}

    def count(self) -> int:
        """How many documents are searchable (0 if the index does not exist yet)."""
        with self._talking():
            try:
                return int(self.client.count(index=self.index)["count"])
            except NotFoundError as e:
                if e.error == "index_not_found_exception":
                    return 0
                raise

    # -- versions ---------------------------------------------------------------------------

    def promote(self, alias: str) -> None:
        """Point ``alias`` at this index alone, atomically (readers never see no index or two).

        Raises ``LookupError`` if this index does not exist (nothing was ever written to it).
        """
        check_index_name(alias)
        with self._talking():
            if not self.client.indices.exists(index=self.index):
                raise LookupError(
                    f"cannot point alias {alias!r} at Elasticsearch index {self.index!r}: "
                    "the index does not exist; write and commit documents first"
                )
            try:
                holders = list(self.client.indices.get_alias(name=alias))
            except NotFoundError:
                holders = []
            actions: list[dict[str, Any]] = [
                {"remove": {"index": holder, "alias": alias}} for holder in holders if holder != self.index
            ]
            actions.append({"add": {"index": self.index, "alias": alias}})
            self.client.indices.update_aliases(actions=actions)

    def drop(self) -> None:
        """Delete this concrete index and its documents (for old versions and tests); no-op if absent."""
        with self._talking():
            try:
                self.client.indices.delete(index=self.index)
            except NotFoundError as e:
                if e.error != "index_not_found_exception":
                    raise
        self._created = False

    def close(self) -> None:
        """Close the client if this object created it from a URL."""
        if self._owns_client:
            self.client.close()

    def __repr__(self) -> str:
        return f"ElasticsearchIndex({self.url!r}, {self.index!r}, fields={self.fields})"
