"""The contract every lexical backend passes, written once.

A backend's test class inherits :class:`LexicalIndexContract` and overrides the
``lexical_index`` fixture with a fresh, empty index of that backend; every test here then runs
against it. The corpus is small and hand-made so that the expected rankings hold for any
English analyzer with stop words and a stemmer (tantivy's Snowball, Elasticsearch's Porter),
whatever the exact BM25 numbers.
"""

from __future__ import annotations

import pytest

from bertsearch.indexer.documents import Document, Hit
from bertsearch.indexer.lexical import LEXICAL_STAGE, LexicalIndex

CORPUS = [
    Document(
        "solar",
        "Solar power",
        "Solar panels convert sunlight into electricity.",
        {"source": "encyclopedia", "year": 2021, "tags": ["energy", "sun"], "reviewed": True},
    ),
    Document("wind", "Wind power", "Wind turbines generate electricity from moving air."),
    Document("bread", "Baking bread", "Knead the dough, then let the bread rise before baking it."),
    Document(
        "sourdough",
        "Sourdough starter — levain",
        "A starter is flour and water, fermented by wild yeast.",
        {"author": "Zoë Brûlé", "nested": {"ratio": 0.5, "steps": [1, 2, 3]}},
    ),
    Document("eclipse", "Solar eclipse", "The moon passes between the sun and the earth."),
]
CORPUS_IDS = {doc.id for doc in CORPUS}

ODD_QUERIES = [
    "the and of a is to",  # stop words only
    "?!.,;:-- ... ///",  # punctuation only
    'C++ AND (OR "',  # query-language syntax, unbalanced
    "title:solar",
    "solar~2 -wind* +bread^3",
    "[1 TO 5] {a TO z}",
    "\\ \\\\ ' \" `",
    "/regex.*/",
    "NOT",
    "Ünïcödé ÷ 漢字 🙂",
]


def ids(hits: list[Hit]) -> list[str]:
    return [hit.id for hit in hits]


class LexicalIndexContract:
    """Tests every :class:`~bertsearch.indexer.lexical.LexicalIndex` backend must pass."""

    @pytest.fixture
    def lexical_index(self) -> LexicalIndex:
        raise NotImplementedError("a backend's test class overrides `lexical_index` with an empty index")

    @pytest.fixture
    def filled(self, lexical_index: LexicalIndex) -> LexicalIndex:
        assert lexical_index.upsert(CORPUS) == []
        lexical_index.commit()
        return lexical_index

    def test_implements_the_protocol(self, lexical_index: LexicalIndex) -> None:
        assert isinstance(lexical_index, LexicalIndex)

    def test_empty_index_finds_nothing(self, lexical_index: LexicalIndex) -> None:
        assert lexical_index.count() == 0
        assert lexical_index.search("solar power", 10) == []
        assert lexical_index.get(["solar"]) == {}

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("solar", ["solar", "eclipse"]),  # tf 2 beats tf 1 at equal length
            ("wind turbines electricity", ["wind", "solar"]),  # three terms beat one
            ("bread dough", ["bread"]),
            ("yeast flour starter", ["sourdough"]),
        ],
    )
    def test_search_ranks_the_expected_documents(
        self, filled: LexicalIndex, query: str, expected: list[str]
    ) -> None:
        assert ids(filled.search(query, 10)) == expected

    def test_query_is_analysed_like_the_documents(self, filled: LexicalIndex) -> None:
        assert ids(filled.search("PANEL", 10)) == ["solar"]  # lowercased, and panels -> panel
        assert ids(filled.search("baked", 10)) == ["bread"]  # baking and baked share a stem

    def test_hits_carry_bm25_scores_best_first(self, filled: LexicalIndex) -> None:
        hits = filled.search("solar wind electricity power", 10)
        assert set(ids(hits)) == {"solar", "wind", "eclipse"}
        assert len(set(ids(hits))) == len(hits)
        for hit in hits:
            assert isinstance(hit, Hit)
            assert hit.score > 0
            assert dict(hit.scores) == {LEXICAL_STAGE: hit.score}
        scores = [hit.score for hit in hits]
        assert scores == sorted(scores, reverse=True)

    def test_k_limits_the_hits(self, filled: LexicalIndex) -> None:
        query = "solar wind electricity power"
        everything = filled.search(query, 10)
        assert len(everything) == 3
        assert ids(filled.search(query, 2)) == ids(everything)[:2]
        assert ids(filled.search(query, 1)) == ids(everything)[:1]
        assert filled.search(query, 0) == []

    @pytest.mark.parametrize("query", ODD_QUERIES)
    def test_odd_queries_are_plain_text(self, filled: LexicalIndex, query: str) -> None:
        hits = filled.search(query, 10)
        assert isinstance(hits, list)
        assert set(ids(hits)) <= CORPUS_IDS

    @pytest.mark.parametrize("query", ["", "   ", "the and of a is to", "?!.,;:-- ... ///"])
    def test_queries_without_terms_find_nothing(self, filled: LexicalIndex, query: str) -> None:
        assert filled.search(query, 10) == []

    def test_explain_names_the_matched_terms_and_their_scores_sum_to_the_hit(
        self, filled: LexicalIndex
    ) -> None:
        query = "solar wind electricity power"
        (wind,) = [hit for hit in filled.search(query, 10) if hit.id == "wind"]
        matches = filled.explain(query, "wind")
        assert len(matches) == 3  # wind, electricity, power, as the backend's analyzer stems them
        assert sum(m.score for m in matches) == pytest.approx(wind.score, rel=1e-4)
        assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
        fields = {m.term[:4]: m.fields for m in matches}
        assert fields["wind"] == ("title", "text") and fields["powe"] == ("title",)
        assert filled.explain(query, "bread") == [] and filled.explain(query, "no-such-doc") == []

    def test_count_after_several_upserts(self, lexical_index: LexicalIndex) -> None:
        assert lexical_index.upsert(CORPUS[:2]) == []
        assert lexical_index.upsert(CORPUS[2:]) == []
        lexical_index.commit()
        assert lexical_index.count() == len(CORPUS)

    def test_upsert_replaces_a_document_with_the_same_id(self, filled: LexicalIndex) -> None:
        new = Document("bread", "Pasta", "Boil the pasta in salted water.", {"edition": 2})
        assert filled.upsert([new]) == []
        filled.commit()
        assert filled.count() == len(CORPUS)
        assert ids(filled.search("pasta", 10)) == ["bread"]
        assert filled.search("knead dough", 10) == []
        assert filled.get(["bread"]) == {"bread": new}

    def test_last_of_repeated_ids_in_one_upsert_wins(self, lexical_index: LexicalIndex) -> None:
        twice = [Document("x", text="first apple"), Document("x", text="second banana")]
        assert lexical_index.upsert(twice) == []
        lexical_index.commit()
        assert lexical_index.count() == 1
        assert ids(lexical_index.search("banana", 10)) == ["x"]
        assert lexical_index.search("apple", 10) == []
        assert lexical_index.get(["x"])["x"].text == "second banana"

    def test_delete_removes_from_search_get_and_count(self, filled: LexicalIndex) -> None:
        filled.delete(["wind", "never-indexed"])
        filled.commit()
        assert ids(filled.search("wind turbines electricity", 10)) == ["solar"]
        assert filled.get(["wind"]) == {}
        assert filled.count() == len(CORPUS) - 1
        assert set(filled.get([doc.id for doc in CORPUS])) == CORPUS_IDS - {"wind"}

    def test_deleted_id_can_be_indexed_again(self, filled: LexicalIndex) -> None:
        filled.delete(["wind"])
        filled.commit()
        assert filled.upsert([Document("wind", "Wind again", "Gusts of wind.")]) == []
        filled.commit()
        assert ids(filled.search("gusts", 10)) == ["wind"]
        assert filled.count() == len(CORPUS)

    def test_get_returns_stored_documents_and_omits_missing_ids(self, filled: LexicalIndex) -> None:
        found = filled.get(["solar", "missing", "sourdough", "solar"])
        assert set(found) == {"solar", "sourdough"}
        by_id = {doc.id: doc for doc in CORPUS}
        for doc_id, doc in found.items():
            expected = by_id[doc_id]
            assert (doc.id, doc.title, doc.text) == (expected.id, expected.title, expected.text)
            assert dict(doc.metadata) == dict(expected.metadata)
        assert filled.get([]) == {}
        assert filled.get(["missing"]) == {}
