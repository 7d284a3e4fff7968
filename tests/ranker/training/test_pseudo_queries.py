"""Pseudo-queries: title and crop queries made from a corpus, and their dev split."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bertsearch.ranker.training.pseudo_queries import (
    PseudoQueryConfig,
    pseudo_queries,
    split_pseudo_queries,
    split_sentences,
)
from support.training_data import PSEUDO_CORPUS


@pytest.mark.unit
def test_title_pseudo_queries_take_the_title_out_of_the_passage():
    made = pseudo_queries(PSEUDO_CORPUS, PseudoQueryConfig("title", min_passage_words=8))
    by_doc = {q.positives[0].doc_id: q for q in made}
    assert set(by_doc) == {"a", "b", "d"}  # c has no title, e is too short
    glacier = by_doc["a"]
    assert glacier.text == "Glacier retreat in the Alps"
    assert "glacier retreat in the alps" not in glacier.positives[0].passage.lower()
    assert glacier.positives[0].passage.startswith("has sped up.")
    assert glacier.excluded == {"a"}
    # a document sharing the title answers the query as well, so it is never a negative
    assert by_doc["b"].never_negative == {"b", "d"}
    assert PseudoQueryConfig("title").passage_view == "text"


@pytest.mark.unit
def test_crop_pseudo_queries_cut_a_sentence_or_a_word_window_out():
    config = PseudoQueryConfig("crop", min_passage_words=8, seed=3)
    made = pseudo_queries(PSEUDO_CORPUS, config)
    assert made == pseudo_queries(list(reversed(PSEUDO_CORPUS)), config)  # deterministic
    by_doc = {q.positives[0].doc_id: q for q in made}
    assert {"a", "b", "c"} <= set(by_doc) and "e" not in by_doc
    for doc in PSEUDO_CORPUS:
        if doc.id not in by_doc:
            continue
        query = by_doc[doc.id]
        passage = query.positives[0].passage
        assert query.text not in passage
        assert query.text in doc.text
        if doc.title:
            assert passage.startswith(doc.title)  # crop keeps the title: the passage is served as body
    assert by_doc["a"].text in split_sentences(PSEUDO_CORPUS[0].text)
    # tokenised lower-case text (MEDLINE) ends its sentences with a free-standing " . "
    assert split_sentences("fetal plasma glucose . correlations were found . the end") == [
        "fetal plasma glucose .", "correlations were found .", "the end"]
    assert 8 <= len(by_doc["c"].text.split()) <= 16  # no sentence punctuation: a word window
    assert PseudoQueryConfig("crop").passage_view == "body"
    limited = pseudo_queries(PSEUDO_CORPUS, PseudoQueryConfig("crop", min_passage_words=8, limit=2))
    assert len(limited) == 2 and {q.id for q in limited} <= {q.id for q in made}


@pytest.mark.unit
def test_dev_pseudo_queries_are_second_crops_of_training_documents():
    config = PseudoQueryConfig("crop", min_passage_words=8, seed=3)
    train = pseudo_queries(PSEUDO_CORPUS, config)
    with_dev, dev = split_pseudo_queries(PSEUDO_CORPUS, replace(config, dev=2))
    assert with_dev == train  # asking for a dev split changes nothing about training
    assert len(dev.queries) == 2 and split_pseudo_queries(PSEUDO_CORPUS, replace(config, dev=2))[1] == dev
    trained = {q.positives[0].doc_id: q for q in train}
    sources = {d.id: d for d in PSEUDO_CORPUS}
    for query in dev.queries:
        doc_id = query.positives[0].doc_id
        indexed = dev.documents[doc_id]
        assert doc_id in trained and query.text in sources[doc_id].text
        # another cut than the trained one: the dev document lacks the dev text, keeps the trained
        assert query.text not in indexed.text and trained[doc_id].text in indexed.text
        assert indexed.title == sources[doc_id].title and query.positives[0].passage == indexed.body
    # only training documents give dev queries: with one training query, one dev query at most
    (only,) = pseudo_queries(PSEUDO_CORPUS, replace(config, limit=1))
    _, one = split_pseudo_queries(PSEUDO_CORPUS, replace(config, limit=1, dev=1))
    assert list(one.documents) == [only.positives[0].doc_id]
    with pytest.raises(ValueError, match="only 1 training documents"):
        split_pseudo_queries(PSEUDO_CORPUS, replace(config, limit=1, dev=2))
    with pytest.raises(ValueError, match="needs crop queries"):
        PseudoQueryConfig("title", dev=5)
