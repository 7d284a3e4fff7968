"""Each lexical backend against the shared contract, plus backend-specific checks.

The Elasticsearch tests talk to a real server at ``BERTSEARCH_ES_URL`` (``docker compose up -d
elasticsearch`` gives one at http://localhost:9200) and skip when it is unset; nothing here
mocks Elasticsearch.
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from bertsearch.indexer.documents import Document
from bertsearch.indexer.tantivy_index import TantivyIndex
from support.lexical_contract import LexicalIndexContract, ids

ES_URL_ENV = "BERTSEARCH_ES_URL"
NO_ES = f"{ES_URL_ENV} is not set: no Elasticsearch server to test against"
CORPUS_DOC = Document("a", "Title", "text")


# -- tantivy ---------------------------------------------------------------------------------


@pytest.mark.unit
class TestTantivyIndex(LexicalIndexContract):
    @pytest.fixture
    def lexical_index(self, tmp_path) -> TantivyIndex:
        return TantivyIndex(tmp_path / "lex")

    def test_writes_survive_reopening(self, tmp_path) -> None:
        index = TantivyIndex(tmp_path / "lex")
        index.upsert([Document("a", "Persistent", "stays on disk")])
        index.commit()
        reopened = TantivyIndex(tmp_path / "lex")
        assert reopened.count() == 1
        assert ids(reopened.search("disk", 5)) == ["a"]


BM25_K1 = 1.2
BM25_B = 0.75
BM25_CORPUS = [
    Document("d1", text="apple banana apple cherry"),
    Document("d2", text="banana banana banana date elderberry fig"),
    Document("d3", text="cherry apple"),
    Document("d4", text="grape melon kiwi lemon lime mango"),
    Document("d5", text="apple"),
    Document("d6", text="banana cherry date"),
    Document("d7", title="Kiwi", text="kiwi salad with apple and the mango"),
]


def textbook_bm25(query_terms: list[str], docs: dict[str, list[str]]) -> dict[str, float]:
    """Okapi BM25 (k1 = 1.2, b = 0.75, Lucene's idf) of every document matching a query term.

    Each query term adds its own score, so a term repeated in the query counts again, as in a
    boolean query with one clause per term.
    """
    n_docs = len(docs)
    avgdl = sum(len(tokens) for tokens in docs.values()) / n_docs
    scores: dict[str, float] = {}
    for doc_id, tokens in docs.items():
        tf = Counter(tokens)
        matched = [term for term in query_terms if tf[term]]
        if not matched:
            continue
        total = 0.0
        for term in matched:
            df = sum(term in other for other in docs.values())
            idf = math.log(1 + (n_docs - df + 0.5) / (df + 0.5))
            norm = BM25_K1 * (1 - BM25_B + BM25_B * len(tokens) / avgdl)
            total += idf * tf[term] * (BM25_K1 + 1) / (tf[term] + norm)
        scores[doc_id] = total
    return scores


@pytest.mark.unit
@pytest.mark.parametrize(
    "query", ["apple", "banana cherry", "apple banana cherry date", "mango kiwi", "salad", "fig apple apple"]
)
def test_tantivy_scores_are_textbook_bm25(tmp_path, query: str) -> None:
    index = TantivyIndex(tmp_path / "lex")
    assert index.upsert(BM25_CORPUS) == []
    index.commit()
    docs = {doc.id: index.terms(doc.body) for doc in BM25_CORPUS}
    expected = textbook_bm25(index.terms(query), docs)
    assert expected, "the query should match something"

    hits = index.search(query, len(BM25_CORPUS))
    assert {hit.id for hit in hits} == set(expected)
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.id], rel=1e-4), hit.id


# -- Elasticsearch ---------------------------------------------------------------------------


@pytest.fixture
def es_url() -> str:
    url = os.environ.get(ES_URL_ENV)
    if not url:
        pytest.skip(NO_ES)
    return url


def unique_name(prefix: str = "bertsearch-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.mark.elasticsearch
@pytest.mark.integration
class TestElasticsearchIndex(LexicalIndexContract):
    @pytest.fixture
    def lexical_index(self, es_url: str) -> Iterator:
        from bertsearch.indexer.elastic_index import ElasticsearchIndex

        index = ElasticsearchIndex(es_url, unique_name())
        yield index
        index.drop()
        index.close()

    def test_refused_documents_are_reported_and_the_rest_indexed(self, lexical_index) -> None:
        too_long = "x" * 600
        failures = lexical_index.upsert(
            [Document("ok", "Fine", "a perfectly good document"), Document("", "No id"), Document(too_long)]
        )
        assert sorted(f.doc_id for f in failures) == sorted(["", too_long])
        assert all(f.reason for f in failures)
        lexical_index.commit()
        assert lexical_index.count() == 1
        assert ids(lexical_index.search("perfectly good", 5)) == ["ok"]

    def test_promote_moves_the_alias_to_one_version(self, es_url: str) -> None:
        from bertsearch.indexer.elastic_index import ElasticsearchIndex

        alias = unique_name()
        v1 = ElasticsearchIndex.for_version(es_url, alias, 1)
        v2 = ElasticsearchIndex.for_version(es_url, alias, 2)
        reader = ElasticsearchIndex(es_url, alias)
        try:
            with pytest.raises(LookupError):
                v1.promote(alias)  # nothing written yet
            v1.upsert([Document("a", "Version one", "apples")])
            v1.commit()
            v1.promote(alias)
            assert ids(reader.search("apples", 5)) == ["a"]

            v2.upsert([Document("b", "Version two", "bananas")])
            v2.commit()
            assert ids(reader.search("bananas", 5)) == []  # not promoted yet
            v2.promote(alias)
            assert ids(reader.search("bananas", 5)) == ["b"]
            assert reader.search("apples", 5) == []
            assert reader.count() == 1
            v2.promote(alias)  # promoting the current version again changes nothing
            assert reader.count() == 1
        finally:
            v1.drop()
            v2.drop()
            for index in (v1, v2, reader):
                index.close()


@pytest.mark.unit
class TestElasticsearchIndexOffline:
    """What needs no server: naming, settings checks, and the error when there is none."""

    def test_construction_is_cheap_and_names_versions(self) -> None:
        from bertsearch.indexer.elastic_index import ElasticsearchIndex

        # Nothing listens on port 9 (discard) here: construction must not connect.
        index = ElasticsearchIndex.for_version("http://127.0.0.1:9", "bertsearch", "20250101")
        assert index.index == "bertsearch-20250101"
        index.close()

    @pytest.mark.parametrize("name", ["", "Upper", "_private", "a*b", "with space", "a/b", "a,b"])
    def test_invalid_index_names_are_refused(self, name: str) -> None:
        from bertsearch.indexer.elastic_index import ElasticsearchIndex

        with pytest.raises(ValueError, match="not a valid Elasticsearch index name"):
            ElasticsearchIndex("http://127.0.0.1:9", name)

    def test_unknown_search_fields_are_refused(self) -> None:
        from bertsearch.indexer.elastic_index import ElasticsearchIndex

        with pytest.raises(ValueError, match="fields"):
            ElasticsearchIndex("http://127.0.0.1:9", "bertsearch", fields=("body", "abstract"))

    def test_a_url_without_scheme_names_the_setting(self) -> None:
        from bertsearch.indexer.elastic_index import ElasticsearchIndex

        with pytest.raises(ValueError, match=ES_URL_ENV):
            ElasticsearchIndex("localhost:9200", "bertsearch")

    def test_no_server_raises_a_clear_error(self) -> None:
        from bertsearch.indexer.elastic_index import ElasticsearchIndex, ElasticsearchUnavailable

        with socket.socket() as sock:  # a local port that nothing listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        url = f"http://elastic:hunter2@127.0.0.1:{port}"
        index = ElasticsearchIndex(url, "bertsearch")
        for call in (index.count, lambda: index.search("solar", 3), lambda: index.upsert([CORPUS_DOC])):
            with pytest.raises(ElasticsearchUnavailable) as error:
                call()
            message = str(error.value)
            assert f"127.0.0.1:{port}" in message
            assert ES_URL_ENV in message
            assert "hunter2" not in message
        assert isinstance(error.value, ConnectionError)
        index.close()



@pytest.mark.unit
def test_tantivy_reports_unserialisable_metadata_and_keeps_the_rest(tmp_path):
    import datetime

    index = TantivyIndex(tmp_path / "lex")
    failures = index.upsert(
        [
            Document("ok", "Alpha", "alpha text"),
            Document("bad", "Beta", "beta text", metadata={"when": datetime.date(2020, 1, 1)}),
            Document("", "Gamma", "gamma text"),
        ]
    )
    index.commit()
    assert [(f.doc_id, f.reason.split(":")[0]) for f in failures] == [
        ("bad", "metadata is not JSON-serialisable"),
        ("", "empty document id"),
    ]
    assert index.count() == 1 and list(index.get(["ok", "bad"])) == ["ok"]
