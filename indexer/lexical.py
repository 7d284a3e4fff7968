"""The lexical (BM25) retrieval role, which every lexical backend implements."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bertsearch.indexer.documents import Document, Hit

LEXICAL_STAGE = "bm25"


@dataclass(frozen=True)
class IndexingFailure:
    """A document the backend refused (Elasticsearch bulk item errors, for example)."""

    doc_id: str
    reason: str


@dataclass(frozen=True)
class TermMatch:
    """A query term (as the analyzer made it) that matched a document: its BM25 contribution in
    the searched field, and the stored fields it occurs in."""

    term: str
    score: float
    field: str
    fields: tuple[str, ...]
    frequency: float | None = None  # occurrences in the searched field, when the engine says


@runtime_checkable
class LexicalIndex(Protocol):
    """A BM25 index of documents, keyed by document id.

    Writes (``upsert``, ``delete``) become visible to ``search``/``get`` after ``commit``.
    ``search`` returns hits whose ``scores`` hold the ``bm25`` stage score, best first.
    """

    def upsert(self, documents: Iterable[Document]) -> list[IndexingFailure]:
        """Add or replace documents by id; return the ones the backend refused."""
        ...

    def delete(self, ids: Iterable[str]) -> None:
        """Remove documents by id; unknown ids are ignored."""
        ...

    def commit(self) -> None:
        """Make every write so far durable and searchable."""
        ...

    def search(self, query: str, k: int) -> list[Hit]:
        """The top ``k`` documents for a free-text query (no query syntax is interpreted)."""
        ...

    def get(self, ids: Sequence[str]) -> dict[str, Document]:
        """The stored documents among ``ids``; missing ids are absent from the result."""
        ...

    def count(self) -> int:
        """How many documents are searchable."""
        ...

    def explain(self, query: str, doc_id: str) -> list[TermMatch]:
        """The query's terms that matched ``doc_id``, from the engine's own score explanation,
        largest contribution first; [] when nothing matched or the document is not indexed."""
        ...
