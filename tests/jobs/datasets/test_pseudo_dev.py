"""``bertsearch pseudo-dev``: the pseudo-judged dev folder of a corpus."""

from __future__ import annotations

import json

import pytest

from bertsearch.jobs.datasets.beir import BeirDataset
from bertsearch.ranker.training.pseudo_queries import (
    PseudoQueryConfig,
    split_pseudo_queries,
)
from support.files import write_jsonl
from support.training_data import PSEUDO_CORPUS


@pytest.mark.unit
def test_pseudo_dev_folder_is_the_corpus_with_dev_text_cut_and_loads_as_a_judged_split(tmp_path):
    from bertsearch.jobs.cli import main
    from bertsearch.jobs.datasets.pseudo_dev import write_pseudo_dev

    records = [{"_id": d.id, "title": d.title, "text": d.text} for d in PSEUDO_CORPUS]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", records)
    _, dev = split_pseudo_queries(PSEUDO_CORPUS, PseudoQueryConfig("crop", min_passage_words=8, dev=2))
    dataset = write_pseudo_dev(corpus, dev, tmp_path / "dev")
    written = [json.loads(line) for line in (tmp_path / "dev" / "corpus.jsonl").open()]
    assert [r["_id"] for r in written] == [r["_id"] for r in records]  # every document, in order
    for original, copy in zip(records, written, strict=True):
        if original["_id"] in dev.documents:
            assert copy["text"] == dev.documents[original["_id"]].text != original["text"]
        else:
            assert copy == original
    judged = dataset.load("dev")
    assert judged.qrels == {q.id: {q.positives[0].doc_id: 1} for q in dev.queries}
    assert judged.queries == {q.id: q.text for q in dev.queries}
    before = (tmp_path / "dev" / "corpus.jsonl").read_bytes()
    write_pseudo_dev(corpus, dev, tmp_path / "dev")  # a rerun writes the same bytes: its index is reused
    assert (tmp_path / "dev" / "corpus.jsonl").read_bytes() == before
    # `bertsearch pseudo-dev` writes the same folder for the default crop settings
    _, default = split_pseudo_queries(PSEUDO_CORPUS, PseudoQueryConfig("crop", dev=1))
    assert main(["pseudo-dev", str(tmp_path), "--out", str(tmp_path / "cli"), "--queries", "1"]) == 0
    assert BeirDataset(tmp_path / "cli").load("dev").queries == {q.id: q.text for q in default.queries}
