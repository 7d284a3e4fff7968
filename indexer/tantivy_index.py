"""The embedded lexical backend: a tantivy index on local disk.

Documents are analysed with an English analyzer (simple tokenizer, lowercase, English stop
words, Snowball English stemmer). ``title`` and ``text`` are stored and indexed; ``body``
(title + text) is indexed only and is what queries search by default, the way Anserini's
"flat" BEIR indexes do. Scores are tantivy's BM25 (k1 = 1.2, b = 0.75).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import tantivy

from bertsearch.indexer.documents import Document, Hit
from bertsearch.indexer.lexical import LEXICAL_STAGE, IndexingFailure, TermMatch

ANALYZER = "en_bertsearch"
SEARCH_FIELDS = ("body",)
WRITER_HEAP_BYTES = 128 * 1024 * 1024


def english_analyzer() -> tantivy.TextAnalyzer:
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.stopword("english"))
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("title", stored=True, tokenizer_name=ANALYZER)
    builder.add_text_field("text", stored=True, tokenizer_name=ANALYZER)
    builder.add_text_field("body", stored=False, tokenizer_name=ANALYZER)
    builder.add_text_field("metadata", stored=True, tokenizer_name="raw", index_option="basic")
    return builder.build()


class TantivyIndex:
    """A :class:`~bertsearch.indexer.lexical.LexicalIndex` stored in a folder.

    ``TantivyIndex(path)`` creates the folder's index if there is none and opens it otherwise.
    One writer is held lazily, on the first write; readers reload on ``commit``.
    """

    def __init__(self, path: str | Path, *, fields: Sequence[str] = SEARCH_FIELDS) -> None:
        self.path = Path(path)
        self.fields = list(fields)
        self.path.mkdir(parents=True, exist_ok=True)
        self._schema = _schema()
        self._index = tantivy.Index(self._schema, path=str(self.path), reuse=True)
        self._analyzer = english_analyzer()
        self._index.register_tokenizer(ANALYZER, self._analyzer)
        self._writer: tantivy.IndexWriter | None = None

    def _writer_(self) -> tantivy.IndexWriter:
        if self._writer is None:
            self._writer = self._index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=1)
        return self._writer

    def upsert(self, documents: Iterable[Document]) -> list[IndexingFailure]:
        writer = self._writer_()
        failures = []
        for doc in documents:
            if not doc.id:
                failures.append(IndexingFailure(doc.id, "empty document id"))
                continue
            try:
                metadata = json.dumps(dict(doc.metadata), ensure_ascii=False)
            except (TypeError, ValueError) as err:  # checked before any write for this document
                failures.append(IndexingFailure(doc.id, f"metadata is not JSON-serialisable: {err}"))
                continue
            writer.delete_documents_by_term("id", doc.id)
            writer.add_document(
                tantivy.Document(id=doc.id, title=doc.title, text=doc.text, body=doc.body, metadata=metadata)
            )
        return failures

    def delete(self, ids: Iterable[str]) -> None:
        writer = self._writer_()
        for doc_id in ids:
            writer.delete_documents_by_term("id", doc_id)

    def commit(self) -> None:
        if self._writer is not None:
            self._writer.commit()
            self._writer.wait_merging_threads()  # consumes the writer: take a fresh one next time
            self._writer = None
        self._index.reload()

    def terms(self, text: str) -> list[str]:
        """The index terms the English analyzer makes of ``text``."""
        return self._analyzer.analyze(text)

    def search(self, query: str, k: int) -> list[Hit]:
        terms = self.terms(query)
        if not terms or k <= 0:
            return []
        # Build the query from analysed terms instead of the query language, so user text
        # such as "C++ (or) AND:" is never parsed as syntax.
        clauses = [
            (tantivy.Occur.Should, tantivy.Query.term_query(self._schema, field, term, index_option="freq"))
            for term in terms
            for field in self.fields
        ]
        searcher = self._index.searcher()
        result = searcher.search(tantivy.Query.boolean_query(clauses), limit=k, count=False)
        hits = []
        for score, address in result.hits:
            doc_id = searcher.doc(address)["id"][0]
            hits.append(Hit(id=doc_id, score=float(score), scores={LEXICAL_STAGE: float(score)}))
        return hits

    def get(self, ids: Sequence[str]) -> dict[str, Document]:
        searcher = self._index.searcher()
        found: dict[str, Document] = {}
        for doc_id in ids:
            query = tantivy.Query.term_query(self._schema, "id", doc_id, index_option="basic")
            result = searcher.search(query, limit=1, count=False)
            if result.hits:
                found[doc_id] = self._document(searcher.doc(result.hits[0][1]))
        return found

    def count(self) -> int:
        return self._index.searcher().num_docs

    def explain(self, query: str, doc_id: str) -> list[TermMatch]:
        searcher = self._index.searcher()
        by_id = tantivy.Query.term_query(self._schema, "id", doc_id, index_option="basic")
        found = searcher.search(by_id, limit=1)
        if not found.hits:
            return []
        address = found.hits[0][1]
        stored = self._document(searcher.doc(address))
        in_field = {"title": set(self.terms(stored.title)), "text": set(self.terms(stored.text))}
        matches = []
        for term in dict.fromkeys(self.terms(query)):
            for field in self.fields:
                # tantivy's own explanation of this term's BM25 score (a boolean "should" query
                # scores the sum of its terms', so these add up to the search score)
                term_query = tantivy.Query.term_query(self._schema, field, term, index_option="freq")
                try:
                    explained = json.loads(term_query.explain(searcher, address).to_json())
                except ValueError:  # the document does not match this term
                    continue
                if explained.get("value", 0.0) > 0:
                    fields = tuple(f for f, terms in in_field.items() if term in terms)
                    score = float(explained["value"])
                    matches.append(TermMatch(term, score, field, fields, _frequency(explained)))
        return sorted(matches, key=lambda m: -m.score)

    @staticmethod
    def _document(stored: tantivy.Document) -> Document:
        fields = stored.to_dict()
        return Document(
            id=fields["id"][0],
            title=fields.get("title", [""])[0],
            text=fields.get("text", [""])[0],
            metadata=json.loads(fields.get("metadata", ["{}"])[0]),
        )


def _frequency(explanation: dict) -> float | None:
    """The "freq, occurrences of term within document" leaf of a tantivy BM25 explanation."""
    for detail in explanation.get("details", []):
        if str(detail.get("description", "")).startswith("freq, occurrences"):
            return float(detail["value"])
        found = _frequency(detail)
        if found is not None:
            return found
    return None
