"""A judged dev split for a corpus that has none, made of pseudo-queries and written as a BEIR folder.

For a seeded sample of the documents a label-free crop run trains on, a second crop (a sentence,
or a word window, other than the one trained on) is a dev query whose only relevant document is
the one it came from (``bertsearch.ranker.training.pseudo_queries.split_pseudo_queries``). The folder holds
a copy of the corpus in which those documents have lost that text, so that BM25 cannot find
them by the copied words. ``bertsearch pseudo-dev`` writes it; ``tune-rerank-weight`` and
``eval`` read it like any dataset. It measures the pseudo-query task, not real queries: it
tells whether a label-free model has learned its task, and the rerank weight it favours was
higher than judged queries favour on every set it was checked against (docs/training.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from bertsearch.indexer.corpus import CorpusReader
from bertsearch.indexer.documents import Document
from bertsearch.jobs.datasets.beir import BeirDataset, write_qrels
from bertsearch.ranker.training.pseudo_queries import PseudoDev, PseudoQueryConfig, split_pseudo_queries

SPLIT = "dev"


def make_pseudo_dev(dataset: Path, out: Path, config: PseudoQueryConfig) -> tuple[Path, int]:
    """Write the pseudo-judged dev split of ``dataset``'s corpus to ``out`` (``config.dev`` queries
    from the documents a crop run with ``config``'s limit and seed trains on).

    Returns the corpus read and the number of dev queries written.
    """
    corpus = BeirDataset(dataset).corpus_path
    _, dev = split_pseudo_queries(CorpusReader(corpus), config)
    write_pseudo_dev(corpus, dev, out)
    return corpus, len(dev.queries)


def write_pseudo_dev(corpus: Path, dev: PseudoDev, out: Path) -> BeirDataset:
    """Write ``out``/{corpus.jsonl, queries.jsonl, qrels/dev.tsv} and return it as a dataset.

    The corpus is ``corpus`` with every dev document replaced by its version without the dev
    query's text; everything else is copied as it is, in the same order. Rewriting an unchanged
    folder gives the same bytes, so its index (keyed by the corpus digest) is reused.
    """
    if not dev.queries:
        raise ValueError("no pseudo-queries to write a dev split from")
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as lines:
        for doc in CorpusReader(corpus):
            lines.write(json.dumps(_record(dev.documents.get(doc.id, doc)), ensure_ascii=False) + "\n")
    with open(out / "queries.jsonl", "w", encoding="utf-8") as lines:
        for query in dev.queries:
            lines.write(json.dumps({"_id": query.id, "text": query.text}, ensure_ascii=False) + "\n")
    write_qrels(out / "qrels" / f"{SPLIT}.tsv", {q.id: {q.positives[0].doc_id: 1} for q in dev.queries})
    return BeirDataset(out)


def _record(doc: Document) -> dict:
    record = {"_id": doc.id, "title": doc.title, "text": doc.text}
    if doc.metadata:
        record["metadata"] = dict(doc.metadata)
    return record
