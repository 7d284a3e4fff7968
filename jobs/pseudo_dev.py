"""A judged dev split for a corpus that has none: held-out pseudo-queries, written as a BEIR folder.

``bertsearch train --pseudo-queries M --pseudo-dev N`` keeps N pseudo-queries out of training
(``ranker.training.pseudo_queries.split_pseudo_queries``). Each one's document is the only
relevant answer to it. The folder written here holds a copy of the corpus in which those
documents have lost the query text, so that BM25 cannot find them by the copied words. Indexed
like any dataset, it is evaluated after every epoch by the ``bertsearch eval`` code and chooses
the epoch and the rerank weight, as a judged dev split does. What it measures is the
pseudo-query task, not real queries: the weight it picks is the one that serves that task best.
"""

from __future__ import annotations

import json
from pathlib import Path

from indexer.corpus import CorpusReader
from indexer.documents import Document
from jobs.beir import BeirDataset, write_qrels
from ranker.training.pseudo_queries import HeldOut

SPLIT = "dev"


def write_pseudo_dev(corpus: Path, held: HeldOut, out: Path) -> BeirDataset:
    """Write ``out``/{corpus.jsonl, queries.jsonl, qrels/dev.tsv} and return it as a dataset.

    The corpus is ``corpus`` with every held-out document replaced by its version without the
    query text; everything else is copied as it is, in the same order. Rewriting an unchanged
    folder gives the same bytes, so its index (keyed by the corpus digest) is reused.
    """
    if not held.queries:
        raise ValueError("no held-out pseudo-queries to write a dev split from")
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    reader = CorpusReader(corpus)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as lines:
        for doc in reader:
            lines.write(json.dumps(_record(held.documents.get(doc.id, doc)), ensure_ascii=False) + "\n")
    with open(out / "queries.jsonl", "w", encoding="utf-8") as lines:
        for query in held.queries:
            lines.write(json.dumps({"_id": query.id, "text": query.text}, ensure_ascii=False) + "\n")
    write_qrels(out / "qrels" / f"{SPLIT}.tsv", {q.id: {q.positives[0].doc_id: 1} for q in held.queries})
    return BeirDataset(out)


def _record(doc: Document) -> dict:
    record = {"_id": doc.id, "title": doc.title, "text": doc.text}
    if doc.metadata:
        record["metadata"] = dict(doc.metadata)
    return record
