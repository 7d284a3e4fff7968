"""Hard-negative mining over a real (tiny) index."""

from __future__ import annotations

import pytest

from bertsearch.indexer.documents import Document
from bertsearch.ranker.factory import open_pipeline
from bertsearch.ranker.training.examples import (
    MiningConfig,
    Positive,
    TrainingQuery,
    mine_groups,
    queries_from_qrels,
)
from bertsearch.ranker.training.pseudo_queries import (
    PseudoQueryConfig,
    pseudo_queries,
)
from support.training_data import TOY_QUERIES

# --- mining over a real (tiny) index -------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_index(tiny_index_dir):
    return tiny_index_dir


@pytest.mark.unit
def test_mined_negatives_never_include_a_judged_relevant_document(toy_index):
    queries = {"q1": "programming language garbage collection", "q2": "brewed drinks", "q3": "animals"}
    qrels = {
        "q1": {"python": 1, "rust": 1, "cats": 0},  # cats judged non-relevant: may be a negative
        "q2": {"tea": 1, "coffee": 2},
        "q3": {"cats": 1, "dogs": 1, "volcano": 0},
    }
    pipeline = open_pipeline(toy_index)
    try:
        report = mine_groups(pipeline, queries_from_qrels(queries, qrels), MiningConfig(depth=8, negatives=4))
    finally:
        pipeline.close()
    assert len(report.groups) == 6  # one group per (query, relevant document)
    for group in report.groups:
        relevant = {d for d, grade in qrels[group.query_id].items() if grade > 0}
        assert group.doc_ids[0] in relevant and group.size == 5
        assert not relevant & set(group.doc_ids[1:])
        assert group.passages[0].startswith(  # the positive passage is the indexed body
            {"python": "The Python", "rust": "Rust", "tea": "Green tea", "coffee": "Coffee",
             "cats": "Domestic cats", "dogs": "Dogs"}[group.doc_ids[0]]
        )
    again = open_pipeline(toy_index)
    try:
        repeat = mine_groups(again, queries_from_qrels(queries, qrels), MiningConfig(depth=8, negatives=4))
    finally:
        again.close()
    assert repeat.groups == report.groups  # seeded sampling


@pytest.mark.unit
def test_mining_for_pseudo_queries_excludes_the_source_and_hides_titles(toy_index, corpus_records):
    docs = [Document(r["_id"], r["title"], r["text"]) for r in corpus_records]
    config = PseudoQueryConfig("title", min_query_words=1, min_passage_words=5)
    queries = pseudo_queries(docs, config)
    pipeline = open_pipeline(toy_index)
    try:
        mining = MiningConfig(depth=8, negatives=3, passage=config.passage_view)
        report = mine_groups(pipeline, queries, mining)
    finally:
        pipeline.close()
    by_id = {d.id: d for d in docs}
    assert len(report.groups) == len(queries) == len(docs)
    for group in report.groups:
        source = group.doc_ids[0]
        assert source not in group.doc_ids[1:]
        assert all(p == by_id[d].text for d, p in zip(group.doc_ids[1:], group.passages[1:], strict=True))


@pytest.mark.unit
def test_a_query_with_only_relevant_candidates_is_skipped_and_reported(toy_index):
    everything = {r: 1 for r in TOY_QUERIES}
    query = TrainingQuery("all", "anything at all", tuple(Positive(d) for d in sorted(everything)))
    pipeline = open_pipeline(toy_index)
    try:
        report = mine_groups(pipeline, [query], MiningConfig(depth=8, negatives=2))
    finally:
        pipeline.close()
    assert report.groups == [] and report.skipped[0][0] == "all"


@pytest.mark.unit
def test_documents_relevant_to_a_query_of_the_same_text_are_never_negatives():
    # SciFact train queries 89 and 90: one question under two ids, each judged with its own document
    queries = {"89": "Which protein binds DNA?", "90": "which  protein binds dna? ", "91": "Other question"}
    qrels = {"89": {"d1": 1}, "90": {"d2": 1, "d9": 0}, "91": {"d3": 1}}
    made = {q.id: q for q in queries_from_qrels(queries, qrels)}
    assert made["90"].never_negative == {"d1", "d2"}  # d9 was judged non-relevant: still a negative
    assert made["89"].never_negative == {"d1", "d2"}
    assert made["91"].never_negative == {"d3"}
    assert [p.doc_id for p in made["90"].positives] == ["d2"]  # the twin's document is banned, not a positive


@pytest.mark.unit
def test_retrieved_positives_keeps_only_those_among_the_mined_candidates(toy_index):
    queries = {"q1": "programming language garbage collection"}
    qrels = {"q1": {"python": 1, "rust": 1, "volcano": 1, "tea": 1}}
    pipeline = open_pipeline(toy_index)
    try:
        fused = pipeline.config.with_overrides(rerank=False, lexical_k=50, dense_k=50)
        top = {hit.id for hit in pipeline.search(queries["q1"], top_k=3, config=fused).hits}
        judged = queries_from_qrels(queries, qrels)
        everything = mine_groups(pipeline, judged, MiningConfig(depth=3, negatives=2))
        retrieved = mine_groups(pipeline, judged, MiningConfig(depth=3, negatives=2, positives="retrieved"))
    finally:
        pipeline.close()
    assert top & set(qrels["q1"]) and set(qrels["q1"]) - top  # the case needs both kinds of positive
    assert sorted(g.doc_ids[0] for g in everything.groups) == sorted(qrels["q1"])
    assert sorted(g.doc_ids[0] for g in retrieved.groups) == sorted(top & set(qrels["q1"]))
    assert retrieved.positives_not_retrieved == len(set(qrels["q1"]) - top)
    assert everything.positives_not_retrieved == 0
    assert retrieved.skipped == [] and everything.skipped == []


@pytest.mark.unit
def test_a_query_without_a_retrieved_positive_is_skipped_with_its_reason(toy_index):
    text = "programming language garbage collection"
    pipeline = open_pipeline(toy_index)
    try:
        fused = pipeline.config.with_overrides(rerank=False, lexical_k=50, dense_k=50)
        top = {hit.id for hit in pipeline.search(text, top_k=3, config=fused).hits}
        unseen = sorted({"python", "rust", "volcano", "tea"} - top)
        judged = queries_from_qrels({"q1": text}, {"q1": dict.fromkeys(unseen, 1)})
        report = mine_groups(pipeline, judged, MiningConfig(depth=3, negatives=2, positives="retrieved"))
    finally:
        pipeline.close()
    assert unseen and report.groups == []
    assert report.skipped == [("q1", "no positive among the top 3 candidates")]
    assert report.positives_not_retrieved == len(unseen)


@pytest.mark.unit
def test_the_recorded_mining_settings_name_positives_only_when_not_the_default():
    assert "positives" not in MiningConfig().describe()  # groups mined before the option still match
    assert MiningConfig(positives="retrieved").describe()["positives"] == "retrieved"
    with pytest.raises(ValueError, match="positives"):
        MiningConfig(positives="some")
