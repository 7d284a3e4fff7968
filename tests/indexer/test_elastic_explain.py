"""Reading Elasticsearch's _explain output (the live round trip is in the lexical contract suite,
which needs a server): the term weights of a most_fields query over two fields."""

from __future__ import annotations

import pytest

from bertsearch.indexer.elastic_explain import term_weights

pytestmark = pytest.mark.unit

# The shape Elasticsearch 9 returns for a match on body: a sum of BM25 weight leaves.
EXPLANATION = {
    "value": 1.1748, "description": "sum of:",
    "details": [
        {"value": 0.9838, "description": "weight(body:wind in 1) [PerFieldSimilarity], result of:",
         "details": [{"value": 0.9838, "description": "score(freq=2.0), computed as boost * idf * tf from:",
                      "details": [{"value": 2.2, "description": "boost", "details": []}]}]},
        {"value": 0.1910, "description": "weight(body:electr in 1) [PerFieldSimilarity], result of:",
         "details": []},
    ],
}  # fmt: skip


def test_the_weight_leaves_are_the_matched_terms_with_their_scores():
    assert list(term_weights(EXPLANATION)) == [("body", "wind", 0.9838), ("body", "electr", 0.1910)]


def test_an_explanation_without_matches_yields_nothing():
    assert list(term_weights({"value": 0.0, "description": "no matching term", "details": []})) == []
