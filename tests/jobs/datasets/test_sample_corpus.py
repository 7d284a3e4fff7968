"""The sample corpus and its hand-judged queries form a BEIR folder that `bertsearch eval` reads."""

from __future__ import annotations

import json

import pytest

from bertsearch.jobs.datasets.beir import BeirDataset
from bertsearch.jobs.datasets.sample_corpus import write_sample_corpus, write_sample_queries
from bertsearch.jobs.datasets.sample_queries import SAMPLE_QUERIES

pytestmark = pytest.mark.unit


def test_the_sample_folder_is_a_judged_dataset(tmp_path):
    corpus = tmp_path / "sample" / "corpus.jsonl"
    count = write_sample_corpus(corpus)
    ids = {json.loads(line)["_id"] for line in corpus.open()}
    assert count == len(ids) > 1000 and {"heapq.nlargest", "shutil.rmtree", "json.dumps"} <= ids
    written = write_sample_queries(corpus)
    judged = BeirDataset(corpus.parent).load("test")
    assert written == len(judged.queries) == sum(doc_id in ids for doc_id, _ in SAMPLE_QUERIES) >= 40
    answers = {text: doc_id for doc_id, text in SAMPLE_QUERIES}
    for query_id, text in judged.queries.items():
        assert judged.qrels[query_id] == {answers[text]: 1}


def test_a_query_whose_answer_this_python_lacks_is_left_out(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    record = {"_id": "json.dumps", "title": "json.dumps", "text": "Serialize obj"}
    corpus.write_text(json.dumps(record) + "\n")
    assert write_sample_queries(corpus) == 1
    judged = BeirDataset(tmp_path).load("test")
    assert list(judged.qrels.values()) == [{"json.dumps": 1}]
